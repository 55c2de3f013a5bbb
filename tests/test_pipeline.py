"""Many images with one model: size batches, out-of-memory halving, the CPU fallback, outcomes in input order."""


import numpy as np
import torch

from sgacodec.codec import batching as pipeline
from sgacodec.config import RefineConfig


def test_automatic_batches_fill_the_megapixel_budget():
    images = [np.zeros((512, 768, 3), np.uint8)] * 40 + [np.zeros((768, 512, 3), np.uint8)] * 2
    batches = pipeline.batches_by_size(images, None)
    assert [len(b) for b in batches] == [30, 10, 2]  # 12 MP / (768 x 512) = 30
    assert [len(b) for b in pipeline.batches_by_size(images, 16)] == [16, 16, 8, 2]



def test_a_batch_that_runs_out_of_device_memory_is_split():
    from sgacodec.codec.batching import halving_on_oom

    seen = []

    def encode_part(part):
        seen.append(list(part))
        if len(part) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [f"report {i}" for i in part]

    assert halving_on_oom(encode_part, [0, 1, 2, 3, 4]) == [f"report {i}" for i in range(5)]
    assert seen[0] == [0, 1, 2, 3, 4] and max(map(len, seen[1:])) <= 3



def test_eval_every_defaults_to_10_on_a_gpu_and_1_on_a_cpu(tiny_model):
    from sgacodec.codec.batching import BatchEncoder

    encoder = BatchEncoder(tiny_model, RefineConfig(), "cpu")
    assert encoder.config_for().eval_every == 1
    encoder.device = torch.device("cuda")  # the choice only; nothing runs on it
    assert encoder.config_for().eval_every == 10
    assert encoder.config_for(RefineConfig(eval_every=3)).eval_every == 3
