"""What pyproject.toml cannot declare: packages are found (none listed by hand), and the example AHDR training
repository ``examples/ahdr`` ships inside the wheel as ``semkt_plugin.example_ahdr``, one source for the example
and for what ``semkt demo`` trains."""
from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["semkt_plugin", "semkt_plugin.*", "semkt_adapters"]),
        "semkt_plugin.example_ahdr",
    ],
    package_dir={"semkt_plugin.example_ahdr": "examples/ahdr"},
)
