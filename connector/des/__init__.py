"""The DES v1 container: byte layout, streaming writer, range-reading reader, ``des://`` filesystem."""
