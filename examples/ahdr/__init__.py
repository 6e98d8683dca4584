"""The example AHDRNet training repository; semkt ships it as ``semkt_plugin.example_ahdr`` for ``semkt demo``.

Its scripts import each other by flat name (``from model import AHDR``), as upstream's do: run them from this
folder, or load them with :func:`semkt_plugin.reproduction.paired.load_example`.
"""
