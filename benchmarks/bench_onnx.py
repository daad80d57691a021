"""onnxruntime (and TorchScript) against PyTorch: network images per second on the CPU, as ratios.

    python benchmarks/bench_onnx.py                                  # sphere20, dlib-resnet, mobilefacenet
    python benchmarks/bench_onnx.py --backbones dlib-resnet --batch-size 64 --repeats 7

Each backbone (untrained, seeded; dlib-resnet with the real weights when ../shared has them, which changes
nothing about its speed) is exported with torch.onnx.export and torch.jit.trace into a temporary folder and
built through lrbench's own `onnx` and `torchscript` backbones, so the ratio includes what lrbench adds (the
copy to and from numpy). The three paths run the same normalised random crops, interleaved round by round so
that a busy machine slows them alike; each reports the median of --repeats rounds. onnxruntime gets as many
threads as PyTorch (torch.get_num_threads()).

    python benchmarks/bench_onnx.py --fixed-batch --folds 2 --per-class 40 --rounds 3

--fixed-batch measures instead a graph that takes exactly one face per run, as many published ONNX files do:
the built-in MobileFaceNet (`mbf`, random weights) exported with a fixed batch of 1, run by `lrbench embed -b onnx`
(`--batch-size auto`) on LFW images (../shared) or a synthetic set. lrbench's marginal time of DF 1-9 over DF 1
alone (start-up cancels; eight DFs of degrade, normalise, mirror and the graph) is set against a bare
onnxruntime loop, one run per image, over the same 8 × N faces and their mirror images (already normalised;
a session made as lrbench makes it), in rounds each bracketed by that loop (loop, lrbench, loop).
"""

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_speed import SHARED_LFW, bracketed_rounds, lrbench_marginal, report_rounds, subset_pairs  # this folder
from lrbench_plugins.dlib_resnet import DAT_NAME

from lrbench import registry
from lrbench.data.synth import synthesize
from lrbench.eval.engine import EvalSettings, prepare
from lrbench.eval.models import build_backbone
from lrbench.plugins import load_plugins, load_plugins_dir

SHARED_DAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "models" / DAT_NAME
BENCH_PLUGINS = Path(__file__).resolve().parent / "plugins"
# backbone → (weights, options, the onnx backbone's preset)
NETWORKS = {
    "sphereface": ("random", {"depth": 20}, "sphereface"),
    "dlib-resnet": (str(SHARED_DAT) if SHARED_DAT.is_file() else "random", {}, "dlib-resnet"),
    "mobilefacenet": ("random", {}, "mobilefacenet"),
}


def exported(model: torch.nn.Module, example: torch.Tensor, folder: Path) -> dict[str, Path]:
    """The network as an ONNX file (dynamic batch) and a traced TorchScript file."""
    paths = {"onnx": folder / "model.onnx", "torchscript": folder / "model.pt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example[:2], str(paths["onnx"]), input_names=["data"], output_names=["embedding"],
                          dynamic_axes={"data": {0: "batch"}, "embedding": {0: "batch"}}, dynamo=False)
        torch.jit.trace(model, example[:2]).save(str(paths["torchscript"]))
    return paths


def images_per_s(networks: dict[str, torch.nn.Module], batch: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median images/s of each network over ``repeats`` interleaved rounds (after one warm-up round)."""
    seconds: dict[str, list[float]] = {name: [] for name in networks}
    with torch.inference_mode():
        for round_ in range(repeats + 1):
            for name, network in networks.items():
                started = time.perf_counter()
                network(batch)
                if round_:
                    seconds[name].append(time.perf_counter() - started)
    return {name: len(batch) / statistics.median(times) for name, times in seconds.items()}


def fixed_batch(folds: int, per_class: int | None, rounds: int) -> None:
    """lrbench on a batch-1 MobileFaceNet graph against a bare onnxruntime loop over the same images."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = SHARED_LFW if (SHARED_LFW / "pairs.txt").is_file() else synthesize(scratch / "synth").lfw_root
        model = build_backbone(registry.backbone("mbf"), "random", {})
        graph = scratch / "mbf-batch1.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, 3, 112, 112), str(graph), input_names=["data"],
                              output_names=["embedding"], dynamo=False)
        settings = EvalSettings(
            backbone="onnx", weights=str(graph), options=("preset=insightface",), data=data,
            pairs=subset_pairs(Path(data) / "pairs.txt", folds, per_class, scratch / "pairs.txt"),
            landmarks=Path(data) / "landmarks.txt", cache_dir=scratch / "cache", show_progress=False,
        )
        lrbench_marginal(settings)  # fills the crop cache
        prepared = prepare(settings)
        network, crops = prepared.extractor.model, torch.tensor(prepared.extractor.crops)
        faces = prepared.input_spec.normalise(crops.permute(0, 3, 1, 2).float())
        images = [image[None].numpy() for image in torch.cat([faces, faces.flip(3)])]
        session = network._session("cpu")  # made as lrbench makes it (threads); the loop runs it bare

        def bare_loop() -> float:
            started = time.perf_counter()
            for _ in range(8):
                for image in images:
                    session.run([network.output_name], {network.input_name: image})
            return time.perf_counter() - started

        _, manifest = lrbench_marginal(settings)
        print(f"mbf exported with a fixed batch of 1 ({network.shapes['input']}), {len(crops)} images, DF 1 vs 1-9 "
              f"(8 × {len(images)} graph runs), lrbench hands it {manifest['batching']['batch_size']} faces per call, "
              f"{torch.get_num_threads()} threads, onnxruntime {network.ort.__version__}", flush=True)
        report_rounds(bracketed_rounds(bare_loop, lambda: lrbench_marginal(settings)[0], rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default=",".join(NETWORKS), help="comma-separated, from " + ", ".join(NETWORKS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fixed-batch", action="store_true",
                        help="instead: lrbench on a batch-1 graph against a bare onnxruntime loop, in rounds")
    parser.add_argument("--folds", type=int, default=2, help="--fixed-batch: folds of LFW pairs whose images run")
    parser.add_argument("--per-class", type=int, default=40, help="--fixed-batch: same (and different) pairs per fold")
    parser.add_argument("--rounds", type=int, default=3, help="--fixed-batch's rounds")
    args = parser.parse_args()
    load_plugins()
    load_plugins_dir(BENCH_PLUGINS)
    if args.fixed_batch:
        return fixed_batch(args.folds, args.per_class, args.rounds)
    print(f"CPU, {torch.get_num_threads()} threads, batch {args.batch_size}, median of {args.repeats} rounds")
    print(f"{'backbone':<14} {'input':>8} {'pytorch img/s':>14} {'onnx img/s':>11} {'onnx/pt':>8} "
          f"{'script img/s':>13} {'script/pt':>9}")
    for name in args.backbones.split(","):
        weights, options, preset = NETWORKS[name]
        spec = registry.backbone(name)
        model = build_backbone(spec, weights, options)
        width, height = spec.input.template.size
        generator = torch.Generator().manual_seed(0)
        batch = spec.input.normalise(torch.rand(args.batch_size, 3, height, width, generator=generator) * 255)
        with tempfile.TemporaryDirectory() as folder:
            paths = exported(model, batch, Path(folder))
            networks = {"pytorch": model}
            for kind, path in paths.items():
                networks[kind] = build_backbone(registry.backbone(kind), str(path), {"preset": preset})
            speed = images_per_s(networks, batch, args.repeats)
        print(f"{name:<14} {width}×{height:<4} {speed['pytorch']:>14.1f} {speed['onnx']:>11.1f} "
              f"{speed['onnx'] / speed['pytorch']:>8.2f} {speed['torchscript']:>13.1f} "
              f"{speed['torchscript'] / speed['pytorch']:>9.2f}")


if __name__ == "__main__":
    main()
