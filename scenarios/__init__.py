"""The Hydra configuration of `goflex-twin`, shipped as package data (`config.yaml` and its groups).

A package only so that the configs install with the code and `goflex-twin` finds them as
`pkg://scenarios` from any working directory; it holds no Python API.
"""

__all__: list[str] = []
