"""SAM-1 family model code in plain PyTorch (no torchvision, no timm).

Module trees and parameter names equal the official checkpoints' ``state_dict`` keys, so
``sam_vit_*.pth``, ``medsam_vit_b.pth``, ``lite_medsam.pth`` and ``mobile_sam.pt`` load unchanged
with strict key matching. Import the sub-modules directly (``modeling.sam`` etc.); this package
``__init__`` imports nothing so that ``medsam_agent_rt.segmenters`` works without torch.
"""
