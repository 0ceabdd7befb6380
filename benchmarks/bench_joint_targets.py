"""Joint targets: B images of one reference set drawn as members of one set vs one set each.

With K references and B images, separate sets denoise B·(K + 1) images per step, joint sets K + B
(up to ``max_set_size − K`` targets per set), each with the paper's two guidance passes. Measured in
one run, on the tiny JeDi and on the SD1.4-shaped JeDi (random weights, the production architecture;
on a CPU at a reduced size): seconds per generated image, joint over separate. ToyWorld's identity and
scene accuracy for both are rows of ``s3jedi toyworld eval`` (``jedi-k2-separate``/``jedi-k2-joint``).

    python -m benchmarks.run joint_targets
"""

from __future__ import annotations

import torch
from PIL import Image

from benchmarks.common import target, timeit_interleaved
from core import zoo
from core.threads import torch_threads

K, B = 2, 2


def _ratio(model: str, size: int, steps: int, repeat: int, device: str, threads: int) -> dict:
    pipe = zoo.load("jedi", model, device=device)
    pipe.set_progress_bar_config(disable=True)
    refs = [Image.new("RGB", (size, size), (40 * i, 90, 160)) for i in range(K)]

    def draw(joint: bool):
        return pipe(
            refs,
            "a photo of a teapot",
            num_images_per_prompt=B,
            num_inference_steps=steps,
            height=size,
            width=size,
            joint_targets=joint,
            output_type="latent",
            generator=[torch.Generator().manual_seed(i) for i in range(B)],
        )

    # Interleaved, one thread: a shared machine's load drifts between repeats, and extra OpenMP threads
    # spin against the other jobs.
    with torch_threads(threads):
        timed = timeit_interleaved({"separate": lambda: draw(False), "joint": lambda: draw(True)}, repeat=repeat)
    separate, joint = timed["separate"], timed["joint"]
    ratio = joint["median_s"] / separate["median_s"]
    passes = (K + B) / (B * (K + 1))
    print(
        f"   {model} {size}², K={K}, B={B}, {steps} steps: joint {1000 * joint['median_s'] / B:.0f} vs separate "
        f"{1000 * separate['median_s'] / B:.0f} ms/image = {ratio:.2f}x (image-passes {passes:.2f}x)"
    )
    return {
        "size": size,
        "steps": steps,
        "separate_s_per_image": separate["median_s"] / B,
        "joint_s_per_image": joint["median_s"] / B,
        "ratio": ratio,
        "image_pass_ratio": passes,
    }


def run() -> dict:
    t = target()
    threads = torch.get_num_threads() if t.gpu else 1
    zoo.build("tiny", ["jedi"])
    return {
        "references": K,
        "images": B,
        "tiny": _ratio("tiny", 64, 10, 5, t.device, threads),
        "sd14_shape": _ratio("shape", t.pick(512, 256), t.pick(30, 2), t.pick(3, 2), t.device, threads),
    }
