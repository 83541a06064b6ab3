"""medssl: self-supervised pretraining and analysis of 3D CT/MR scans."""

__version__ = "0.1.0"
