"""The DES v1 container: byte layout, streaming writer, range-reading reader, ``des://`` filesystem."""

from connector.des.blob import ContainerChanged
from connector.des.cache import DEFAULT_CACHE, IndexCache
from connector.des.format import Footer, MemberInfo
from connector.des.reader import DesReader
from connector.des.writer import DesWriter
from connector.errors import DesFormatError

__all__ = ["DEFAULT_CACHE", "ContainerChanged", "DesFormatError", "DesReader", "DesWriter", "Footer", "IndexCache", "MemberInfo"]
