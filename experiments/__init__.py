"""The presets: one get_config() file each (`jaxdl list`); files starting with _ are family bases."""
