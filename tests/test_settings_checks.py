"""Every settings class refuses each bad field when it is made, naming the field: not later, when ``wrap`` builds
the part that reads it."""
from __future__ import annotations

import dataclasses

import pytest

from semkt_plugin import SKTConfig
from semkt_plugin.strategies.smarthdr import SmartHDRConfig
from semkt_plugin.strategies.smhdr import SMHDRConfig

BASE = {"mu": [0.0, -1.0], "seed": [1.5, True], "total_steps": [0, 2.0]}
BAD = {
    SKTConfig: {
        **BASE,
        "lambda_spg": [-1.0], "lambda_content": [-0.1], "lambda_perceptual": [-1e-2], "lambda_color": [-1.0],
        "lambda_feat": [-0.1],
        "distill_start": [1.5, -1, "half"], "distill_warmup": [2.0, -3],
        "distill_gate": [1, "yes"],
        "num_regions": [0, 2.5],
        "prior_source": ["input"],
        "perceptual": ["vgg16"],
        "teacher_dim": [0, 8.0], "teacher_heads": [0, 1.5], "teacher_stride": [0, 2.0],
        "use_priors": [0], "prior_fusion": ["concat"], "teacher_moves_orm": ["no"],
        "hist_bins": [0, 256.0], "hist_kernel": ["box"], "hist_slope": [0.0, -400.0], "hist_bandwidth": [0.0, -0.1],
        "hist_chunk": [0, 4096.0], "color_background": [None],
        "use_skam": [1], "skam_latent": [0, 32.0], "skam_ratio": [-0.1, 1.5], "skam_mask": ["block"],
        "skam_patch": [0, 8.0], "skam_norm": ["batch"], "skam_reduction": ["max"], "cuda_graphs": ["yes"],
        "frozen_dtype": ["float16"],
    },
    SMHDRConfig: {
        **BASE,
        "peak_ratio": [-0.1, 1.1], "ramp_start": [1.5, -1], "ramp_peak": [2.0], "ramp_end": [-0.5],
        "mask_temperature": ["hot", None], "loss_temperature": ["cold"], "region_prob": [-0.1, 1.5],
        "refresh": [0, 10.0], "lambda_region": [-1.0], "mask_unit": ["patch"], "mask_points": [(), (0.5,), (True,)],
    },
    SmartHDRConfig: {
        **BASE,
        "ema": [-0.1, 1.5], "warmup": [1.5, -1], "judge_point": [-1, 0.0], "patch": [0, 16.0],
        "patch_threshold": [-0.1, 1.1], "pixel_threshold": [1.5], "lambda_u": [-1.0], "lambda_k": [-1.0],
        "sigma_min": [0.0, 1.0], "beta": [-0.5, 2.0], "strong_augment": [1],
    },
}
# fields whose value is checked against something the settings do not hold: a file (or asset name) when it is
# loaded, the adapter's hook points when the strategy is built
CHECKED_ELSEWHERE = {SKTConfig: {"skb_weights", "skb_arch", "vgg19_weights"}, SMHDRConfig: set(), SmartHDRConfig: set()}

CASES = [(cls, name, value) for cls, fields in BAD.items() for name, values in fields.items() for value in values]


@pytest.mark.parametrize("cls", BAD, ids=lambda cls: cls.__name__)
def test_every_field_has_bad_values(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(BAD[cls]) | CHECKED_ELSEWHERE[cls] == fields


@pytest.mark.parametrize(("cls", "name", "value"), CASES, ids=lambda v: v.__name__ if isinstance(v, type) else repr(v))
def test_a_bad_field_is_refused_when_the_settings_are_made(cls, name, value):
    # the schedule points are fractions unless total_steps is set: resolve them, so a bad one is caught
    extra = {} if name == "total_steps" else {"total_steps": 100}
    with pytest.raises(ValueError, match=name):
        cls(**{**extra, name: value})


@pytest.mark.parametrize("cls", BAD, ids=lambda cls: cls.__name__)
def test_the_defaults_pass(cls):
    cls(total_steps=100)


def test_teacher_heads_must_divide_the_width_where_attention_runs():
    with pytest.raises(ValueError, match="teacher_dim 30 must be divisible by teacher_heads 4"):
        SKTConfig(teacher_dim=30, teacher_heads=4)
    SKTConfig(teacher_dim=30, teacher_heads=4, prior_fusion="spatial")  # no attention: no heads to split into
    SKTConfig(teacher_dim=30, teacher_heads=4, use_priors=False)
