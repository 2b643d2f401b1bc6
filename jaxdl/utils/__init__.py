"""Small, dependency-free helpers shared by every layer of jaxdl."""

from jaxdl.utils.errors import JaxdlError
from jaxdl.utils.tree import param_count, tree_sha256

__all__ = ["JaxdlError", "param_count", "tree_sha256"]
