"""Self-distillation (issue 29 item 1): `--distil` adds every earlier exit's KL divergence from the last exit's
softmax to the joint loss; the last exit stays trained by the labels alone."""

from __future__ import annotations

import pytest
import torch

from dimee.offline.training import joint_loss


def _logits() -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(4, 3, requires_grad=True) for _ in range(3)]


def test_without_distillation_the_loss_is_the_mean_cross_entropy():
    logits, labels = _logits(), torch.tensor([0, 1, 2, 0])
    expected = torch.stack([torch.nn.functional.cross_entropy(out, labels) for out in logits]).mean()
    assert joint_loss(logits, labels, "mean").item() == pytest.approx(expected.item())


def test_distillation_adds_the_earlier_exits_divergence_from_the_last():
    logits, labels = _logits(), torch.tensor([0, 1, 2, 0])
    teacher = torch.softmax(logits[-1], -1)
    kl = [(teacher * (teacher.log() - torch.log_softmax(out, -1))).sum(-1).mean() for out in logits[:-1]]
    gained = joint_loss(logits, labels, "mean", distil=0.5) - joint_loss(logits, labels, "mean")
    assert gained.item() == pytest.approx(0.5 * torch.stack(kl).mean().item(), rel=1e-5)


def test_the_teacher_is_not_pulled_towards_its_students():
    logits, labels = _logits(), torch.tensor([0, 1, 2, 0])
    plain = torch.autograd.grad(joint_loss(logits, labels, "mean"), logits[-1])[0]
    distilled = torch.autograd.grad(joint_loss(logits, labels, "mean", distil=2.0), logits[-1])[0]
    assert torch.allclose(plain, distilled)
    student = torch.autograd.grad(joint_loss(logits, labels, "mean", distil=2.0), logits[0])[0]
    assert not torch.allclose(student, torch.autograd.grad(joint_loss(logits, labels, "mean"), logits[0])[0])
