"""Pure, device-agnostic losses."""

from medssl.losses.contrastive import gather_with_grad, nt_xent
from medssl.losses.reconstruction import RECONSTRUCTION_LOSSES, masked_l1, masked_mse

__all__ = ["RECONSTRUCTION_LOSSES", "gather_with_grad", "masked_l1", "masked_mse", "nt_xent"]
