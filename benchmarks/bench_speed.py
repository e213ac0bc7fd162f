"""Speed of cross-encoder reranking, ours against the peers, on the same model and inputs.

One command times every contender on every workload in one run:

    OMP_NUM_THREADS=1 python benchmarks/bench_speed.py [--workloads wikiqa,retrieval-100,retrieval-1000]
        [--reps 3] [--contenders all] [--threads 1] [--json results.json]

``--threads`` sets torch's (and FlashRank's ONNX Runtime) intra-op threads for every contender
alike. The default is 1: on this shared 2-core machine, with a load average above 4, two
OpenMP threads spent most of each call waiting at barriers for a descheduled partner (WikiQA
calls ran 8x slower with 2 threads than with 1); on an idle machine use ``--threads 2``.

Contenders (all on the WikiQA-trained MiniLM-L6 cross-encoder in ../shared/models, top 10 kept):

- ``ours-langchain`` / ``ours-llamaindex`` / ``ours-core``: our adapters (and the core alone) with
  default settings (``backend="auto"``: the OpenVINO engine, bfloat16 where the CPU has it);
- ``ours-langchain-fp32``: our LangChain adapter forced to exact scores (``dtype="float32"``: what a
  CPU without native bfloat16 runs by default);
- ``ours-torch`` / ``ours-torch-fp32``: the LangChain adapter on the torch engine (``backend="torch"``,
  the default before the OpenVINO engine), at the automatic precision and at float32;
- ``ours-openvino-int8``: the LangChain adapter with ``quantize="int8"`` (NNCF static int8; opt-in);
- ``langchain-classic``: ``CrossEncoderReranker(model=HuggingFaceCrossEncoder(...))``;
- ``llamaindex-sbert``: ``SentenceTransformerRerank`` (llama-index-postprocessor-sbert-rerank);
- ``st-rank``: sentence-transformers ``CrossEncoder.rank``;
- ``rerankers``: ``rerankers.Reranker(path, model_type="cross-encoder")`` (its defaults: fp32,
  batches of 16), and ``rerankers-bf16`` (``dtype="bf16"``: weights cast to bfloat16);
- ``flashrank``: FlashRank's ``Ranker`` over an ONNX export of the same model, written into
  FlashRank's cache layout (it only loads models named in its ``model_file_map``, so the
  benchmark adds one entry; nothing is downloaded). FlashRank scores all passages of a request
  in one padded batch; on ``retrieval-1000`` it is sent requests of 100 passages, because one
  batch of 1,000 needs several attention tensors of ~5 GB each.

Each contender lives in its own worker process (so peak RSS is its own), loads once and warms
up; then, for every repetition and every call of a workload, the contenders run one after the
other, the starting one rotating, so they share the background load. Reported per contender:
pairs/s, p50 and p95 seconds per call, peak RSS (after each workload, in workload order), the
median over calls of (its seconds / ours), and whether its top 10 equals exact float32's.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import _workloads as W

TOP_N = 10
OURS = (
    "ours-langchain",
    "ours-llamaindex",
    "ours-core",
    "ours-langchain-fp32",
    "ours-torch",
    "ours-torch-fp32",
    "ours-openvino-int8",
)
OURS_SETTINGS: dict[str, dict[str, str]] = {
    "ours-langchain": {},
    "ours-langchain-fp32": {"dtype": "float32"},
    "ours-torch": {"backend": "torch"},
    "ours-torch-fp32": {"backend": "torch", "dtype": "float32"},
    "ours-openvino-int8": {"quantize": "int8"},
}
ALL = (*OURS, "langchain-classic", "llamaindex-sbert", "st-rank", "rerankers", "rerankers-bf16", "flashrank")
PEERS = tuple(c for c in ALL if c not in OURS)
PEER_DEFAULTS = ("langchain-classic", "llamaindex-sbert", "st-rank", "rerankers", "flashrank")

Runner = Callable[[str, list[str]], list[int]]  # (query, texts) -> input positions of the top 10


# -- the contenders, each built inside its worker ------------------------------------------------


def build(name: str, model: str, workdir: str, threads: int) -> Runner:
    if name in (*OURS_SETTINGS, "langchain-classic"):
        from langchain_core.documents import Document

        if name == "langchain-classic":
            from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
            from langchain_community.cross_encoders import HuggingFaceCrossEncoder

            compressor: Any = CrossEncoderReranker(
                model=HuggingFaceCrossEncoder(model_name=model, model_kwargs={"device": "cpu"}), top_n=TOP_N
            )
        else:
            from langchain_ce_rerank import CrossEncoderRerank

            compressor = CrossEncoderRerank(model=model, top_n=TOP_N, **OURS_SETTINGS[name])

        def run_lc(query: str, texts: list[str], docs: Any = None) -> list[int]:
            out = compressor.compress_documents(docs, query)
            return [int(d.id) for d in out]

        run_lc.prepare = lambda texts: [Document(page_content=t, id=str(i)) for i, t in enumerate(texts)]  # type: ignore[attr-defined]
        return run_lc
    if name in ("ours-llamaindex", "llamaindex-sbert"):
        from llama_index.core.schema import NodeWithScore, TextNode

        if name == "llamaindex-sbert":
            from llama_index.postprocessor.sbert_rerank import SentenceTransformerRerank

            post: Any = SentenceTransformerRerank(model=model, top_n=TOP_N, device="cpu")
        else:
            from llamaindex_ce_rerank import CrossEncoderRerank as LIRerank

            post = LIRerank(model=model, top_n=TOP_N)

        def run_li(query: str, texts: list[str], docs: Any = None) -> list[int]:
            out = post.postprocess_nodes(docs, query_str=query)
            return [int(n.node.node_id) for n in out]

        run_li.prepare = lambda texts: [  # type: ignore[attr-defined]
            NodeWithScore(node=TextNode(text=t, id_=str(i)), score=1.0 / (i + 1)) for i, t in enumerate(texts)
        ]
        return run_li
    if name == "ours-core":  # the core alone, no framework imported: like for like with rerankers
        from ce_rerank import CrossEncoderScorer, Reranker

        core = Reranker(CrossEncoderScorer(model), top_n=TOP_N)
        return lambda query, texts, docs=None: [c.index for c in core.rerank(query, texts)]
    if name == "st-rank":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(model, device="cpu")
        return lambda query, texts, docs=None: [r["corpus_id"] for r in ce.rank(query, texts, top_k=TOP_N)]
    if name in ("rerankers", "rerankers-bf16"):
        from rerankers import Reranker

        kwargs = {"dtype": "bf16"} if name.endswith("bf16") else {}
        ranker = Reranker(model, model_type="cross-encoder", device="cpu", verbose=0, **kwargs)

        def run_rr(query: str, texts: list[str], docs: Any = None) -> list[int]:
            res = ranker.rank(query=query, docs=texts, doc_ids=list(range(len(texts))))
            return [r.document.doc_id for r in res.top_k(TOP_N)]

        return run_rr
    if name == "flashrank":
        return build_flashrank(model, workdir, threads)
    raise SystemExit(f"unknown contender {name!r}; choose from {', '.join(ALL)}")


def build_flashrank(model: str, workdir: str, threads: int) -> Runner:
    """FlashRank over a one-off ONNX export of ``model``, in FlashRank's own cache layout."""
    import shutil
    import warnings

    import torch
    from flashrank import Config, Ranker, RerankRequest
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = "ce-rerank-bench-model"
    folder = Path(workdir) / name
    if not (folder / "model.onnx").exists():
        folder.mkdir(parents=True, exist_ok=True)
        hf = AutoModelForSequenceClassification.from_pretrained(model).eval()
        tok = AutoTokenizer.from_pretrained(model)
        enc = tok([("a query", "a passage of text")], return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                hf,
                tuple(enc[k] for k in names),
                str(folder / "model.onnx"),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**{k: {0: "batch", 1: "seq"} for k in names}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(model) / f, folder / f)
        (folder / "special_tokens_map.json").write_text(json.dumps(tok.special_tokens_map))
    # FlashRank only loads names its Config lists (Ranker reads the same dict); the folder exists: no download
    Config.model_file_map[name] = "model.onnx"
    ranker = Ranker(model_name=name, cache_dir=workdir, log_level="WARNING")
    # Same thread count as every other contender: FlashRank's session takes ONNX Runtime's default
    # (all cores, spinning), which it offers no setting for.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    ranker.session = ort.InferenceSession(str(folder / "model.onnx"), options)

    def run_fr(query: str, texts: list[str], docs: Any = None) -> list[int]:
        scored: list[dict] = []
        for start in range(0, len(texts), 100 if len(texts) > 100 else len(texts)):
            passages = [{"id": start + i, "text": t} for i, t in enumerate(texts[start : start + 100])]
            scored.extend(ranker.rerank(RerankRequest(query=query, passages=passages)))
        scored.sort(key=lambda p: -p["score"])
        return [p["id"] for p in scored[:TOP_N]]

    return run_fr


# Our contenders on the OpenVINO engine: their workers never import torch (the model is converted
# beforehand, see convert_first), so their peak RSS is what a serving process holds.
TORCH_FREE = ("ours-langchain", "ours-llamaindex", "ours-core", "ours-langchain-fp32", "ours-openvino-int8")


def worker(name: str, model: str, threads: int, workdir: str, conn: Any) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["OMP_NUM_THREADS"] = str(threads)  # what the OpenVINO engine follows without torch
    if name not in TORCH_FREE:
        import torch

        torch.set_num_threads(threads)
    try:
        run = build(name, model, workdir, threads)
        prepare = getattr(run, "prepare", lambda texts: None)
        run("warm up", ["a short passage", "another short passage", "a third one"], prepare(["a", "b", "c"]))
    except Exception as exc:  # report, do not hang the orchestrator
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", rss_kb()))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        if msg[0] == "rss":
            conn.send(("rss", rss_kb()))
            continue
        _, query, texts = msg
        docs = prepare(texts)  # what the retriever hands over: built before the clock starts
        if name == "llamaindex-sbert":
            docs = copy.deepcopy(docs)  # it writes scores into its input nodes
        start = time.perf_counter()
        top = run(query, texts, docs)
        conn.send(("done", time.perf_counter() - start, top))


def convert_first(model: str, contenders: list[str], threads: int) -> dict[str, float]:
    """Convert (or find in the cache) the OpenVINO models our contenders use, each in a new process.

    Returns the seconds each took: the first-start cost when the cache was empty, else a cached start.
    """
    seconds = {}
    for name, settings in (("default", {}), ("int8", {"quantize": "int8"})):
        if name == "int8" and "ours-openvino-int8" not in contenders:
            continue
        script = (
            "from ce_rerank import CrossEncoderScorer as S\n"
            f"S({model!r}, **{settings!r}).score('warm up', ['a short passage'])"
        )
        start = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-c", script], check=True, env=env)
        seconds[name] = time.perf_counter() - start
    return seconds


def rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: this process's peak


# -- the orchestrator -----------------------------------------------------------------------------


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def machine() -> dict[str, Any]:

    from ce_rerank._local import native_bfloat16

    model_name = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    import importlib.metadata as md

    versions = {}
    for pkg in (
        "torch",
        "openvino",
        "nncf",
        "sentence-transformers",
        "transformers",
        "onnxruntime",
        "rerankers",
        "flashrank",
        "langchain-classic",
        "langchain-community",
        "llama-index-postprocessor-sbert-rerank",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": model_name,
        "logical_cpus": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags.split(),
        "amx_bf16": "amx_bf16" in flags.split(),
        "torch_native_bfloat16": native_bfloat16(),
        "python": platform.python_version(),
        "versions": versions,
    }


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="wikiqa,retrieval-100,retrieval-1000")
    ap.add_argument(
        "--queries", default="wikiqa=10,retrieval-100=1,retrieval-1000=1", help="calls per repetition for each workload"
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--contenders", default="all", help=f"comma list from: {', '.join(ALL)}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    W.require_shared()
    contenders = list(ALL) if args.contenders == "all" else args.contenders.split(",")
    if "ours-langchain-fp32" not in contenders:
        contenders.insert(0, "ours-langchain-fp32")  # the exact reference for the top-10 check
    n_queries = dict((k, int(v)) for k, v in (x.split("=") for x in args.queries.split(",")))
    workloads = {w: W.WORKLOADS[w][0](n_queries.get(w, 1)) for w in args.workloads.split(",")}
    result: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "threads": args.threads,
        "reps": args.reps,
        "machine": machine(),
        "uptime_start": uptime(),
        "workloads": {},
    }
    print(f"machine: {result['machine']}\nload at start: {result['uptime_start']}", flush=True)
    if any(c in TORCH_FREE for c in contenders):
        result["openvino_first_start_s"] = convert_first(str(W.MODEL), contenders, args.threads)
        print(f"OpenVINO models ready: {result['openvino_first_start_s']}", flush=True)
    ctx = mp.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="ce-rerank-bench-")
    procs, conns, base_rss = {}, {}, {}
    for name in contenders:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker, args=(name, str(W.MODEL), args.threads, workdir, child), daemon=True)
        p.start()
        child.close()  # so that recv() raises EOFError if the worker dies (e.g. killed for memory)
        try:
            msg = parent.recv()  # load one at a time: loading is not what is timed
        except EOFError:
            msg = ("error", f"worker died while loading (exit code {p.join(5) or p.exitcode})")
        if msg[0] == "error":
            print(f"{name}: could not start: {msg[1]}", flush=True)
            result.setdefault("failed", {})[name] = msg[1]
            p.join()
            continue
        procs[name], conns[name], base_rss[name] = p, parent, msg[1]
        print(f"{name}: ready ({msg[1] / 1024:.0f} MiB)", flush=True)
    names = list(procs)
    dead: dict[str, str] = {}
    result["died"] = dead
    try:
        for wname, calls in workloads.items():
            times: dict[str, list[float]] = {n: [] for n in names}
            tops: dict[str, list[list[int]]] = {n: [] for n in names}
            k = 0
            for rep in range(args.reps):
                for _ci, (query, texts) in enumerate(calls):
                    order = names[k % len(names) :] + names[: k % len(names)]  # rotate the starting contender
                    k += 1
                    for n in order:
                        if n in dead:
                            continue
                        try:
                            conns[n].send(("run", query, texts))
                            _, sec, top = conns[n].recv()
                        except (EOFError, BrokenPipeError):
                            procs[n].join(5)
                            dead[n] = (
                                f"worker died during {wname} "
                                f"(exit code {procs[n].exitcode}; -9: killed, e.g. for memory)"
                            )
                            print(f"{n}: {dead[n]}", flush=True)
                            continue
                        times[n].append(sec)
                        if rep == 0:
                            tops[n].append(top)
                print(f"{wname}: rep {rep + 1}/{args.reps} done ({uptime().split('load average: ')[-1]})", flush=True)
            names = [n for n in names if n not in dead]
            rss = {}
            for n in names:
                conns[n].send(("rss",))
                rss[n] = conns[n].recv()[1]
            pairs_per_call = [len(t) for _, t in calls] * args.reps
            rows = {}
            for n in names:
                ts = times[n]
                row = {
                    "pairs_per_s": sum(pairs_per_call) / sum(ts),
                    "p50_s": statistics.median(ts),
                    "p95_s": pct(ts, 0.95),
                    "peak_rss_mib": rss[n] / 1024,
                    "top10_equals_fp32": all(
                        a == b for a, b in zip(tops[n], tops["ours-langchain-fp32"], strict=False)
                    ),
                    "seconds": ts,
                }
                for ours in ("ours-langchain", "ours-langchain-fp32"):
                    if ours in times:
                        row[f"ratio_vs_{ours}"] = statistics.median(
                            a / b for a, b in zip(ts, times[ours], strict=False)
                        )
                rows[n] = row
            result["workloads"][wname] = {
                "description": W.WORKLOADS[wname][1],
                "calls_per_rep": len(calls),
                "pairs_per_call": [len(t) for _, t in calls],
                "contenders": rows,
            }
            print(table(wname, result["workloads"][wname]), flush=True)
    finally:
        for n in names:
            if n not in dead:
                conns[n].send(("stop",))
            procs[n].join(timeout=30)
    result["uptime_end"] = uptime()
    print(f"load at end: {result['uptime_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def table(wname: str, block: dict[str, Any]) -> str:
    rows = block["contenders"]
    lines = [
        f"\n{wname}: {block['description']}; {block['calls_per_rep']} call(s) per repetition, "
        f"{sum(block['pairs_per_call'])} pairs",
        "",
        "| contender | pairs/s | p50 s/call | p95 s/call | peak RSS MiB | its time / ours (default) "
        "| its time / ours (fp32) | top 10 = fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in sorted(rows.items(), key=lambda kv: -kv[1]["pairs_per_s"]):
        lines.append(
            f"| {n} | {r['pairs_per_s']:.1f} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['peak_rss_mib']:.0f} | "
            f"{r.get('ratio_vs_ours-langchain', float('nan')):.2f} | "
            f"{r.get('ratio_vs_ours-langchain-fp32', float('nan')):.2f} | "
            f"{'yes' if r['top10_equals_fp32'] else 'no'} |"
        )
    peers = {n: r for n, r in rows.items() if n in PEER_DEFAULTS}
    if peers and "ours-langchain" in rows:
        fastest = max(peers, key=lambda n: peers[n]["pairs_per_s"])
        lines.append("")
        lines.append(
            f"fastest peer at its defaults: {fastest}; it takes {peers[fastest]['ratio_vs_ours-langchain']:.2f}x our "
            f"default's time and "
            f"{peers[fastest].get('ratio_vs_ours-langchain-fp32', float('nan')):.2f}x our exact fp32's"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
