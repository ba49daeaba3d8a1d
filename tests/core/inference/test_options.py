"""engine_options: what `vsr restore` (and vsr.load) make of --steps, --prompt, --sample and the checkpoint's defaults."""

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.inference import engine_options
from vsr_core.testing import BoringMethod, LatentBoringMethod


def test_steps_become_num_inference_steps_over_the_val_sampling_defaults():
    method = LatentBoringMethod(scale=2, val_sampling={"num_inference_steps": 2, "guidance_scale": 3.0})
    options = engine_options(method, "cpu", steps=5, sample=["guidance_scale=1.5"], tile=0, seed=9)
    assert options.sampling == {"num_inference_steps": 5, "guidance_scale": 1.5}
    assert (options.tile, options.seed, options.device, options.prompt) == (0, 9, "cpu", None)
    assert engine_options(method).sampling == {"num_inference_steps": 2, "guidance_scale": 3.0}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="--steps must be an integer >= 1"):
            engine_options(method, steps=bad)


def test_prompts_follow_the_methods_text_rule():
    with pytest.raises(ConfigError, match="BoringMethod has no text encoder, so --prompt cannot be used"):
        engine_options(BoringMethod(), prompt="a cat")
    assert engine_options(BoringMethod(), prompt="  ").prompt is None  # an empty prompt is always fine

    class Captioned(BoringMethod):
        accepts_prompts = True

    assert engine_options(Captioned(), prompt="a cat").prompt == "a cat"

    class Ignoring(BoringMethod):
        pass

    from vsr_core.text import PromptEncoder

    method = Ignoring()
    method.prompt_encoder = PromptEncoder("none", positive=torch.zeros(1, 2, 4), ignore_prompts=True)
    said = []
    assert engine_options(method, prompt="a cat", on_warning=said.append).prompt is None
    assert said == ["Ignoring has no text encoder; --prompt is ignored (empty-prompt conditioning)"]
