"""The training objectives (docs/method.md#training-objectives) as small functions of logits and features."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def alp_pairing(logits_clean: torch.Tensor, logits_adv: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-sample ALP term (Eq. 1): squared logit difference averaged ('mean') or summed over classes."""
    sq = (logits_clean - logits_adv).pow(2)
    return sq.mean(1) if reduction == "mean" else sq.sum(1)


def true_class_prob(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1)


def adaptive_weights(logits_clean: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 9: w_i = p(y_i | x_i) on the clean sample, detached (a weight, not a gradient path)."""
    return true_class_prob(logits_clean.detach(), y)


def trades_kl(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax f(x) || softmax f(x'))."""
    p = F.softmax(logits_clean, 1)
    return (p * (F.log_softmax(logits_clean, 1) - F.log_softmax(logits_adv, 1))).sum(1)


def contributions(h: torch.Tensor, grad_h: torch.Tensor) -> torch.Tensor:
    """Eq. 5: c = mean over the batch of |h * dL/dh|, one score per penultimate feature."""
    return (h * grad_h).abs().mean(0)


def guided_dropout_mask(c: torch.Tensor, rescale: bool = False) -> torch.Tensor:
    """Eqs. 7-8: m_j = 1 if c_j > median(c) else 0.

    torch.median is the lower median, so for even D without ties exactly D/2 features are kept and for
    odd D (D-1)/2. Features tied at the median are dropped. When ties leave nothing above the median
    (all scores equal, e.g. D = 1) every feature is kept instead of silencing the logits layer.
    rescale: multiply kept features by D / kept, as inverted dropout does.
    The choice is a torch.where, not a Python branch on a tensor: no wait for the device (a CUDA graph captures it).
    """
    mask = (c > c.median()).to(c.dtype)
    kept = mask.sum()
    kept_mask = mask * (c.numel() / kept.clamp_min(1)) if rescale else mask
    return torch.where(kept > 0, kept_mask, torch.ones_like(c))


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y)


def objective(kind: str, logits: torch.Tensor, y: torch.Tensor, n_clean: int, *, lam: float = 0.5,
              pairing: str = "mean", beta: float = 6.0, adaptive: bool = False) -> tuple[torch.Tensor, dict]:
    """The loss of one training step from the logits of the training batch.

    The batch is [x] for raw, [x'] for adv, and [x; x'] (n_clean clean samples first) for alp and
    trades. Returns the loss and a dict of detached terms for logging.
    """
    if kind in ("raw", "adv"):
        loss = ce(logits, y)
        return loss, {"cls": loss.detach()}
    lc, la = logits[:n_clean].float(), logits[n_clean:].float()
    if kind == "alp":
        cls = 0.5 * (ce(lc, y) + ce(la, y))
        pair = alp_pairing(lc, la, pairing)
        w = adaptive_weights(lc, y) if adaptive else torch.ones_like(pair)
        reg = (w * pair).mean()
        return cls + lam * reg, {"cls": cls.detach(), "pair": reg.detach()}
    if kind == "trades":
        cls = ce(lc, y)
        kl = trades_kl(lc, la)
        if adaptive:
            kl = adaptive_weights(lc, y) * kl
        reg = kl.mean()
        return cls + beta * reg, {"cls": cls.detach(), "pair": reg.detach()}
    raise ValueError(f"unknown objective {kind!r}")


def classification_loss(kind: str, logits: torch.Tensor, y: torch.Tensor, n_clean: int, clean_only: bool = False):
    """L_cls of the batch, whose gradient w.r.t. h drives Guided Dropout (mean CE over the batch, which is
    1/2 (CE(x) + CE(x')) for a mixed batch; with clean_only, the clean samples' CE where there are any)."""
    yy = y.repeat(len(logits) // len(y))
    if clean_only and kind in ("alp", "trades", "raw"):
        return ce(logits[:n_clean], y)
    return ce(logits, yy)
