"""Training recipes: each one resolves by modality and data, and changes what it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from chipfit import load_contract
from chipfit.contract.schema import RecipeSettings
from chipfit.errors import ContractError
from chipfit.train.recipes import (
    Recipe,
    RecipeRunner,
    class_weights,
    cutmix,
    resolve_recipe,
    soft_targets,
    spec_augment,
)
from chipfit.train.trainer import Trainer, TrainSettings
from tests.search.small_sensor import write_small_sensor

BALANCED = np.repeat(np.arange(4), 10)
SKEWED = np.array([0] * 30 + [1] * 5 + [2] * 5)


def test_auto_resolves_by_modality_and_labels() -> None:
    img = resolve_recipe(None, modality="image", y_train=BALANCED, num_classes=4)
    aud = resolve_recipe(RecipeSettings(specaugment="auto"), modality="audio", y_train=BALANCED, num_classes=4)
    ser = resolve_recipe(None, modality="series", y_train=SKEWED, num_classes=3)
    assert (img.mixup, img.specaugment, img.balance) == ("mixup+cutmix", False, "off")
    assert (aud.mixup, aud.specaugment) == ("off", True)
    assert (ser.mixup, ser.specaugment, ser.balance) == ("mixup", False, "loss")
    assert img.distill_alpha == 0.0  # no teacher given
    assert resolve_recipe(None, modality="image", y_train=BALANCED, num_classes=4, teacher=True).distill_alpha == 0
    with_kd = RecipeSettings(distill=True)
    assert resolve_recipe(with_kd, modality="image", y_train=BALANCED, num_classes=4, teacher=True).distill_alpha == 0.5
    off = RecipeSettings(one_cycle=False, label_smoothing=0, mixup=False, specaugment=False, balance=False,
                         distill=False)
    assert resolve_recipe(off, modality="audio", y_train=SKEWED, num_classes=3, teacher=True).plain
    with pytest.raises(ValueError, match="cuts image patches"):
        resolve_recipe(RecipeSettings(mixup="cutmix"), modality="series", y_train=BALANCED, num_classes=4)


def test_contract_validates_recipe_settings_at_the_edge(tmp_path: Path) -> None:
    c = load_contract("examples/digits.yaml")
    r = c.search.recipe
    assert r.one_cycle and r.qat and r.mixup == "auto" and not r.distill and r.specaugment == "off"
    assert c.with_updates({"search": {"recipe": {"balance": True, "mixup": False}}}).search.recipe.balance == "loss"
    with pytest.raises(ContractError, match=r"search\.recipe\.specaugment.*input is image"):
        c.with_updates({"search": {"recipe": {"specaugment": True}}})
    with pytest.raises(ContractError, match=r"search\.recipe\.mixup"):
        c.with_updates({"search": {"recipe": {"mixup": "cutmx"}}})
    with pytest.raises(ContractError, match=r"search\.recipe\.label_smoothing"):
        c.with_updates({"search": {"recipe": {"label_smoothing": 1.5}}})
    with pytest.raises(ContractError, match=r"search\.recipe\.mixup.*input is series"):
        # the HAR example on generated windows: a fresh clone without ../shared/data checks the same rule
        load_contract(write_small_sensor(tmp_path)).with_updates({"search": {"recipe": {"mixup": "cutmix"}}})
    with pytest.raises(ContractError, match=r"search\.recipe"):
        c.with_updates({"search": {"recipe": {"one_cylce": True}}})


def test_label_smoothing_targets() -> None:
    t = soft_targets(torch.tensor([0, 2]), 4, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert t[0, 0] == pytest.approx(0.925) and t[0, 1] == pytest.approx(0.025)


def test_mixup_mixes_inputs_and_labels() -> None:
    r = RecipeRunner(Recipe(mixup="mixup", mix_prob=1.0, mixup_alpha=1.0), BALANCED, 4, seed=0)
    x = torch.randn(8, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    xb, target, teacher = r.batch(x, y, torch.arange(8))
    assert teacher is None and not torch.equal(xb, x)
    assert torch.allclose(target.sum(1), torch.ones(8))
    assert (target > 0).sum(1).max() == 2  # two labels per mixed sample (no smoothing)


def test_cutmix_pastes_a_box_and_mixes_by_its_area() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[1] = 1.0
    targets = [soft_targets(torch.tensor([0, 1]), 2, 0.0)]
    out, (t,) = cutmix(x, targets, 0.75, torch.tensor([1, 0]), torch.Generator().manual_seed(0))
    pasted = float(out[0].mean())  # share of sample 0 now from sample 1
    assert 0 < pasted < 1
    assert t[0, 1] == pytest.approx(pasted) and t[0, 0] == pytest.approx(1 - pasted)


def test_specaugment_masks_time_and_frequency_bands() -> None:
    x = torch.arange(2 * 20 * 10, dtype=torch.float32).reshape(2, 1, 20, 10) + 1000
    out = spec_augment(x, torch.Generator().manual_seed(1), time_width=0.2, freq_width=0.3)
    assert out.shape == x.shape
    masked = out != x
    assert masked.any()
    for i in range(2):
        level = x[i].mean(dim=-2, keepdim=True).expand_as(x[i])  # each feature's mean over the frames
        assert torch.allclose(out[i][masked[i]], level[masked[i]])
        rows = masked[i, 0].all(1).sum()  # whole frames masked (time masks)
        cols = masked[i, 0].all(0).sum()  # whole features masked (frequency masks)
        assert rows <= 2 * 4 and cols <= 2 * 3


def test_balance_weights_rare_classes_in_the_loss_and_the_sampler() -> None:
    w = class_weights(SKEWED, 3)
    assert w[1] == pytest.approx(w[2]) and w[1] == pytest.approx(6 * w[0])
    r = RecipeRunner(Recipe(balance="loss"), SKEWED, 3)
    logits = torch.zeros(2, 3)
    logits[:, 0] = 2.0  # predicts the common class
    common = r.loss(logits[:1], soft_targets(torch.tensor([0]), 3, 0), None)
    rare = r.loss(logits, soft_targets(torch.tensor([0, 1]), 3, 0), None)
    plain = RecipeRunner(Recipe(), SKEWED, 3).loss(logits, soft_targets(torch.tensor([0, 1]), 3, 0), None)
    assert rare > plain > common  # the rare sample's error counts more
    s = RecipeRunner(Recipe(balance="sampler"), SKEWED, 3)
    drawn = SKEWED[s.order(4000, torch.Generator().manual_seed(0)).numpy() % len(SKEWED)]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.05)  # 75 % of the labels are class 0; balanced draws


def test_one_cycle_warms_up_peaks_and_anneals() -> None:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    r = RecipeRunner(Recipe(one_cycle=True, one_cycle_peak=3.0), BALANCED, 4)
    r.start(opt, 100)
    lrs = []
    for _ in range(120):  # past the planned steps the rate holds
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        r.after_step()
    assert lrs[0] == pytest.approx(1e-3) and max(lrs) == pytest.approx(3e-2, rel=1e-3)
    assert int(np.argmax(lrs)) == pytest.approx(25, abs=1) and lrs[-1] < 3e-4 and lrs[-1] == lrs[-10]


def test_distillation_loss_is_zero_when_the_student_matches_the_teacher() -> None:
    logits = torch.randn(6, 3)
    r = RecipeRunner(Recipe(distill_alpha=1.0), BALANCED[:6] % 3, 3, teacher_logits=logits.numpy())
    _, target, teacher = r.batch(torch.zeros(6, 2), torch.tensor(BALANCED[:6] % 3), torch.arange(6))
    assert teacher is not None and float(r.loss(logits, target, teacher)) == pytest.approx(0.0, abs=1e-5)
    assert float(r.loss(-logits, target, teacher)) > 0.1
    with pytest.raises(ValueError, match="teacher's logits"):
        RecipeRunner(Recipe(distill_alpha=0.5), BALANCED, 4)


def test_trainer_runs_every_recipe_together() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 6, 5)).astype(np.float32)
    y = SKEWED.copy()
    x[y == 1, 0, 0] += 3
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(30, 3))
    recipe = Recipe(one_cycle=True, label_smoothing=0.1, mixup="mixup+cutmix", mix_prob=1.0, specaugment=True,
                    balance="sampler", distill_alpha=0.5)
    runner = RecipeRunner(recipe, y, 3, teacher_logits=rng.normal(size=(40, 3)).astype(np.float32))
    tr = Trainer(model, x, y, x[:10], y[:10], TrainSettings(batch_size=8, seed=0), recipe=runner)
    runner.start(tr.opt, 3 * 5)
    res = tr.fit(3)
    assert res.epochs == 3 and runner.steps == 15 and 0 <= res.val_accuracy <= 1
