"""An optimiser's state as named tensors and back, for a run's resume state.

The resume state is safetensors (nothing is pickled), which holds named tensors only: each
per-parameter entry of the state (Adam's step, exp_avg, exp_avg_sq) becomes one tensor named
`{prefix}{parameter index}.{key}`; the param groups (plain numbers) go to the state's JSON. The
generator's AdamW (prefix "opt.", train/loop.RunState) and the critic's Adam ("critic.opt.",
train/adversarial.Critic) are saved and restored by these two functions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, Tensor]:
    """`opt`'s per-parameter state as CPU tensors named `{prefix}{index}.{key}`."""
    return {
        f"{prefix}{idx}.{key}": torch.as_tensor(value).detach().cpu().contiguous()
        for idx, st in opt.state_dict()["state"].items()
        for key, value in st.items()
    }


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str, param_groups: list[dict],
                   device: torch.device) -> None:
    """Restore what optimizer_tensors saved under `prefix`, with the saved `param_groups`; the
    state moves to `device`, except scalars (the step count), which torch keeps on the CPU."""
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            idx, key = name[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[key] = value.to(device) if value.ndim else value
    opt.load_state_dict({"state": state, "param_groups": param_groups})
