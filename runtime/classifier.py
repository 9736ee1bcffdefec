"""`Classifier`: an artifact loaded for inference, the part applications embed.

    clf = Classifier.load("artifacts/bert14", precision="int8", provider="cpu", threads=2)
    clf.predict(["央行宣布降准0.5个百分点"])[0].label

Texts are tokenized with the artifact's own vocabulary, fitted to the model's positions by the
long-text strategy (bert14/long_text.py: cut, head and tail, or windows whose scores are pooled;
reported per text as `truncated` and `windows`), sorted by length into buckets that are padded only
to their own longest row, run, and returned in the caller's order. Long inputs are streamed in chunks
so memory stays bounded whatever the number of texts.

    clf.predict(articles, long_text=LongText("windows", pool="max"))   # per call; else options.long_text
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bert14.artifact import MANIFEST_NAME, Manifest, read_manifest, verify_files, with_companions
from bert14.encode import Batch, Encoded, buckets, check_texts, encode
from bert14.errors import ArtifactError, InputError
from bert14.head import (
    DEFAULT_THRESHOLD,
    FUNCTIONS,
    applied,
    check_threshold,
    label_thresholds,
    parse_label_thresholds,
    score_function,
    scores,
)
from bert14.long_text import TRUNCATE, WINDOWS, Document, LongText, body_tokens, documents
from bert14.options import flag, nested
from bert14.runtime.engines import (
    DEFAULT_ENGINE,
    ENGINE_CHOICES,
    PRECISIONS,
    PROVIDERS,
    SessionSettings,
    open_session,
    resolve,
)
from bert14.tokenizer import TokenizerSettings, load_tokenizer

log = logging.getLogger("bert14.runtime")

# What a long_text argument may be: a LongText, a strategy's name, a mapping of its fields, or None (the options').
LongTextLike = LongText | str | Mapping[str, object] | None

# Texts tokenized and bucketed together; bounds memory for any number of texts.
CHUNK = 1024
# Beyond these an option is a typo, not a wish: 10,000 threads on 2 cores makes ONNX Runtime hang
# creating them, and a batch of millions of rows allocates without bound.
MAX_THREADS = 4 * (os.cpu_count() or 1)
MAX_BATCH = 4096
MAX_TOKENS = 1 << 22


def as_long_text(value: object, default: LongText) -> LongText:
    """A LongText from itself, a strategy's name or a mapping of its fields (what it leaves out: `default`'s)."""
    if not isinstance(value, LongText | str | Mapping):
        raise InputError(f"long_text: expected a LongText, a strategy's name or a mapping of its fields, got "
                         f"{type(value).__name__}")  # fmt: skip
    return LongText.parse(value, default)


def positive_int(name: str, value: object, limit: int) -> int:
    """`value` as an int in 1..limit, or an InputError that names the option."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InputError(f"{name}: expected a whole number from 1 to {limit}, got {value!r}")
    return value


@dataclass(frozen=True)
class WindowLabel:
    """One window of a text classified in windows: its characters [start, end) and its own top label."""

    start: int
    end: int
    label: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """One text's answer, read from the logits as the model's head means them (bert14/head.py).

    label: the label with the highest score. score: that score. probs: every label's score, a
    softmax (single-label), an independent sigmoid (multi-label) or the raw output (regression).
    labels: the labels that apply: the top one (single-label), every one whose score reaches the
    threshold (multi-label, possibly none), none (regression). truncated: tokens of the text that
    the model did not see. tokens: the tokens the model ran for it (every window's). windows: rows
    the text took (1 unless the long-text strategy is windows), and window_labels each one's answer.
    """

    label: str
    score: float
    probs: dict[str, float]
    truncated: bool
    tokens: int
    labels: tuple[str, ...] = ()
    windows: int = 1
    window_labels: tuple[WindowLabel, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out = {
            "label": self.label,
            "score": self.score,
            "probs": self.probs,
            "labels": list(self.labels),
            "truncated": self.truncated,
            "tokens": self.tokens,
            "windows": self.windows,
        }
        if self.window_labels:
            out["window_labels"] = [asdict(w) for w in self.window_labels]
        return out


@dataclass(frozen=True)
class LoadOptions:
    """How an artifact is loaded and run. Each field with `flag` metadata is also the flag of that
    name on `predict`, `serve` and (the CPU ones) `batch` (bert14/options.py)."""

    precision: str = field(default="auto", metadata=flag("auto: fp16 on CUDA, INT8 on the CPU", choices=PRECISIONS))
    provider: str = field(default="auto", metadata=flag("auto: CUDA when onnxruntime-gpu has a GPU", choices=PROVIDERS))
    engine: str = field(
        default=DEFAULT_ENGINE,
        metadata=flag(
            "what runs the model on the CPU: ONNX Runtime, OpenVINO (the artifact's OpenVINO INT8 model; the "
            "openvino extra) or auto (OpenVINO for INT8 when both are there)",
            choices=ENGINE_CHOICES,
        ),
    )
    threads: int | None = field(default=None, metadata=flag("intra-op threads (default: all cores)", type=int))
    inter_op_threads: int = field(default=1, metadata=flag("inter-op threads"))
    spinning: bool = field(default=True, metadata=flag("pool threads sleep between ops instead of spinning"))
    warmup: bool = True
    verify: bool = True  # check every used file against the manifest's sha256
    max_batch: int = field(default=32, metadata=flag("rows per bucketed batch", name="batch-size"))
    max_tokens: int = field(default=8192, metadata=flag("padded tokens per bucketed batch"))
    cuda_graph: bool = field(default=False, metadata=flag("CUDA: replay one CUDA graph per fixed bucket"))
    threshold: float = field(
        default=DEFAULT_THRESHOLD, metadata=flag("multi-label models: a label applies from this score on")
    )
    label_thresholds: Mapping[str, float] | None = field(
        default=None,
        metadata=flag(
            "multi-label models: one label's threshold (repeatable; the others keep --threshold)",
            name="label-threshold",
            metavar="LABEL=SCORE",
            repeat=True,
            parse=parse_label_thresholds,
        ),
    )
    long_text: LongText = field(default=LongText(), metadata=nested())  # texts over the model's positions

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> LoadOptions:
        """The inverse of dataclasses.asdict: the options as they cross a process boundary as plain data
        (Ray Serve replicas), the nested long_text included."""
        return cls(**dict(values))  # type: ignore[arg-type]  # long_text as a mapping: __post_init__ builds it

    def __post_init__(self) -> None:
        # A strategy's name or a mapping of LongText's fields, as the CLI and the server take them
        # (long_text="windows", long_text={"strategy": "windows", "stride": 128}).
        object.__setattr__(self, "long_text", as_long_text(self.long_text, LongText()))
        if self.threads is not None:
            positive_int("threads", self.threads, MAX_THREADS)
        positive_int("inter_op_threads", self.inter_op_threads, MAX_THREADS)
        positive_int("max_batch", self.max_batch, MAX_BATCH)
        positive_int("max_tokens", self.max_tokens, MAX_TOKENS)


@dataclass
class Classifier:
    directory: Path
    labels: list[str]
    precision: str
    provider: str
    manifest: Manifest
    options: LoadOptions
    max_length: int
    score_function: str  # softmax | sigmoid | identity, from the manifest (bert14/head.py)
    model_file: str  # the artifact file this classifier runs
    engine: str  # onnxruntime | openvino: what runs it
    thresholds: np.ndarray  # (C,) float64: where each sigmoid label starts to apply
    _session: object = field(repr=False)
    _tokenizer: object = field(repr=False)
    _pad_id: int = 0
    _cuda: object | None = field(default=None, repr=False)  # CudaRunner on the CUDA provider

    @classmethod
    def load(cls, directory: str | Path, options: LoadOptions | None = None, **kwargs: object) -> Classifier:
        """Load an artifact with `options` (typed), or with LoadOptions' fields as keywords
        (precision=, provider=, threads=, ...), which override the given options' fields."""
        unknown = sorted(set(kwargs) - set(LoadOptions.__dataclass_fields__))
        if unknown:
            raise InputError(
                f"Classifier.load: unknown option(s) {unknown}; expected {sorted(LoadOptions.__dataclass_fields__)}"
            )
        options = replace(options or LoadOptions(), **kwargs)  # type: ignore[arg-type]
        check_threshold("threshold", options.threshold)
        directory = Path(directory)
        manifest = read_manifest(directory)
        available = set(manifest.files)
        resolved = resolve(directory, options.precision, options.provider, available, options.engine)
        if options.verify:
            # Every file the runtime reads, and the tokenizer.json and config.json that travel with
            # it: a file swapped for another model's must not load silently.
            support = manifest.model.family.support_files  # the tokenizer's files and config.json
            verify_files(directory, manifest, [*with_companions(resolved.path.name), *support])
        settings = SessionSettings(options.threads, options.inter_op_threads, options.spinning, options.cuda_graph)
        session, actual = open_session(resolved, settings)
        if actual != resolved.provider and options.provider == "auto":
            resolved = resolve(directory, options.precision, "cpu", available, options.engine)
            if options.verify:
                verify_files(directory, manifest, with_companions(resolved.path.name))
            session, actual = open_session(resolved, settings)
        precision, path, engine = resolved.precision, resolved.path, resolved.engine
        tokenizer, tokenizer_settings = load_tokenizer(directory, manifest.model.family)
        labels = [str(label) for label in manifest.model.labels]
        if not labels:
            raise ArtifactError(f"{directory / MANIFEST_NAME}: expected the model's labels, found none")
        thresholds = label_thresholds(labels, options.threshold, options.label_thresholds)
        function = _score_function(manifest, directory, len(labels))
        max_length = _max_length(manifest, tokenizer_settings)
        pad_id = tokenizer.token_to_id(tokenizer_settings.pad_token) or 0
        body = body_tokens(tokenizer, max_length)
        options.long_text.check(body, pairs=False)
        # What the options leave to the model (head tokens, stride) is fitted to it once, here: predict,
        # /v1/model and a request's defaults all read these.
        options = replace(options, long_text=options.long_text.fitted(body))
        runner = None
        if actual == "cuda":
            from bert14.runtime.cuda import CudaRunner

            runner = CudaRunner(session, len(labels), options.cuda_graph, inputs=manifest.model.family.input_names)
        clf = cls(
            directory,
            labels,
            precision,
            actual,
            manifest,
            options,
            max_length,
            function,
            path.name,
            engine,
            thresholds,
            session,
            tokenizer,
            pad_id,
            runner,
        )
        if options.warmup:
            clf.logits(["warm up"], long_text=LongText())
        return clf

    @staticmethod
    def fit_long_text(directory: str | Path, spec: LongTextLike, pairs: bool = False) -> LongText:
        """`spec` checked against the artifact's model and fitted to it, as load() does, without loading a
        model: what a job checks before it starts workers."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        tokenizer, tokenizer_settings = load_tokenizer(directory, manifest.model.family)
        body = body_tokens(tokenizer, _max_length(manifest, tokenizer_settings))
        checked = as_long_text(spec, LongText()) if spec is not None else LongText()
        checked.check(body, pairs)
        return checked.fitted(body)

    @staticmethod
    def files(
        directory: str | Path, precision: str = "auto", provider: str = "cpu", engine: str = DEFAULT_ENGINE
    ) -> list[str]:
        """Names of the artifact's files that load() reads for `precision` on `provider` with `engine`:
        what to copy to a machine that runs it (the manifest first)."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        path = resolve(directory, precision, provider, set(manifest.files), engine).path
        support = manifest.model.family.support_files
        return [MANIFEST_NAME, *with_companions(path.name), *(name for name in support if name in manifest.files)]

    def logits(
        self, texts: Sequence[str] | str, text_pairs: Sequence[str] | None = None, long_text: LongTextLike = None
    ) -> np.ndarray:
        """Raw logits, (N, num_labels) float32, in the caller's order: one row per text, so not for
        windows, whose answer pools probabilities (predict)."""
        spec = self._spec(long_text)
        if spec.strategy == WINDOWS:
            raise InputError("logits: one row per text; long_text 'windows' pools the windows' scores, use predict()")
        checked, checked_pairs = check_texts(texts, text_pairs)
        parts = [self._logits([doc.rows[0] for doc in docs]) for docs in self._chunks(checked, checked_pairs, spec)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(
        self, texts: Sequence[str] | str, text_pairs: Sequence[str] | None = None, long_text: LongTextLike = None
    ) -> list[Prediction]:
        """One Prediction per text: label, score, probs by label, labels that apply, truncated, tokens,
        windows. `long_text`: this call's strategy for texts over the model's positions (default: the
        options')."""
        checked, checked_pairs = check_texts(texts, text_pairs)
        out: list[Prediction] = []
        for docs in self._chunks(checked, checked_pairs, self._spec(long_text)):
            out += self.pool(docs, self.predict_encoded([row for doc in docs for row in doc.rows]))
        return out

    def encode(self, texts: Sequence[str] | str, text_pairs: Sequence[str] | None = None) -> list[Encoded]:
        """Checked and tokenized texts, cut to the model's positions: what predict_encoded() runs."""
        checked, checked_pairs = check_texts(texts, text_pairs)
        return self._encode_checked(checked, checked_pairs)

    def documents(
        self,
        texts: Sequence[str] | str,
        text_pairs: Sequence[str] | None = None,
        long_text: LongTextLike = None,
        max_tokens: int | None = None,
    ) -> list[Document]:
        """Checked texts as their rows under the long-text strategy (default: the options'). Split from
        predict() so that a server can tokenize, budget and schedule rows itself: predict_encoded() or
        predict_buckets() on every document's rows, then pool(). `max_tokens`: raise
        bert14.long_text.OverBudget before building windows past that many tokens in all."""
        checked, checked_pairs = check_texts(texts, text_pairs)
        return self._documents(checked, checked_pairs, self._spec(long_text), max_tokens)

    def _spec(self, long_text: LongTextLike) -> LongText:
        """A call's long-text strategy: the options' unless given; a name or a mapping fills the rest from them."""
        return self.options.long_text if long_text is None else as_long_text(long_text, self.options.long_text)

    def _documents(
        self, texts: list[str], pairs: list[str] | None, spec: LongText, budget: int | None = None
    ) -> list[Document]:
        if spec.strategy == TRUNCATE:  # a row per text, at most the model's positions: bounded as it is
            return [Document((row,), row.truncated) for row in self._encode_checked(texts, pairs)]
        spec.check(body_tokens(self._tokenizer, self.max_length), pairs is not None)  # type: ignore[arg-type]
        return documents(self._tokenizer, texts, spec, self.max_length, budget)  # type: ignore[arg-type]

    def _chunks(self, texts: list[str], pairs: list[str] | None, spec: LongText) -> Iterator[list[Document]]:
        """Documents of about CHUNK rows at a time: memory stays bounded for any number of texts."""
        step = max(CHUNK // spec.max_windows, 1) if spec.strategy == WINDOWS else CHUNK
        for start in range(0, len(texts), step):
            chunk_pairs = pairs[start : start + step] if pairs is not None else None
            yield self._documents(texts[start : start + step], chunk_pairs, spec)

    def pool(self, docs: Sequence[Document], rows: Sequence[Prediction]) -> list[Prediction]:
        """One Prediction per document from its rows' (`rows`: every document's, in order): a single
        row's as it is, windows' scores pooled as the document says."""
        out, at = [], 0
        for doc in docs:
            mine = rows[at : at + len(doc.rows)]
            at += len(doc.rows)
            if not doc.spans:  # one row: truncate or head_tail (whose row alone does not know it was cut)
                row = mine[0]
                out.append(row if row.truncated == doc.truncated else replace(row, truncated=doc.truncated))
                continue
            probs = np.array([[p.probs[label] for label in self.labels] for p in mine])  # (W, C)
            pooled = probs.mean(axis=0) if doc.pool == "mean" else probs.max(axis=0)  # (C,)
            windows = tuple(WindowLabel(a, b, p.label, p.score) for (a, b), p in zip(doc.spans, mine, strict=True))
            tokens = sum(p.tokens for p in mine)
            applies = applied(pooled[None, :], self.score_function, self.thresholds)[0]  # (C,)
            answer = self._prediction(pooled, applies, doc.truncated, tokens)
            out.append(replace(answer, windows=len(mine), window_labels=windows))
        return out

    def row_logits(self, rows: Sequence[Encoded]) -> np.ndarray:
        """Raw logits (R, C) float32 of rows as documents() makes them (a text's windows each), in order."""
        return self._logits(list(rows))

    def _encode_checked(self, texts: list[str], pairs: list[str] | None) -> list[Encoded]:
        # A family without token types (RoBERTa, DistilBERT) tells the segments apart by its separators alone;
        # a BERT-like one with a single type has no way to.
        if pairs is not None and self.manifest.model.family.segments and self.manifest.model.type_vocab_size < 2:
            raise InputError(
                "text_pairs: this model has one token type (type_vocab_size 1), so it cannot tell a second "
                "segment from the first; expected texts without pairs"
            )
        return encode(self._tokenizer, texts, pairs, self.max_length)  # type: ignore[arg-type]

    def predict_encoded(self, encoded: Sequence[Encoded]) -> list[Prediction]:
        """predict() on rows from encode(), in their order (bucketed by length inside)."""
        out: list[Prediction | None] = [None] * len(encoded)
        for indices, predictions in self.predict_buckets(encoded):
            for index, prediction in zip(indices, predictions, strict=True):
                out[index] = prediction
        return out  # type: ignore[return-value]

    def predict_buckets(self, encoded: Sequence[Encoded]) -> Iterator[tuple[list[int], list[Prediction]]]:
        """(positions in `encoded`, their predictions) for each length bucket as soon as it has run,
        shortest first: a server can answer a short request before the long rows of its run."""
        for start in range(0, len(encoded), CHUNK):
            chunk = list(encoded[start : start + CHUNK])
            for batch in buckets(chunk, self.options.max_batch, self.options.max_tokens, self._pad_id):
                rows = [chunk[i] for i in batch.indices]
                yield [start + i for i in batch.indices], self._predictions(self._forward(batch), rows)

    def _predictions(self, logits: np.ndarray, encoded: list[Encoded]) -> list[Prediction]:
        probs = scores(logits, self.score_function)  # (B, C)
        applies = applied(probs, self.score_function, self.thresholds)  # (B, C), for the batch at once
        rows = zip(probs, applies, encoded, strict=True)
        return [self._prediction(row, on, enc.truncated, len(enc.ids)) for row, on, enc in rows]

    def _prediction(self, probs: np.ndarray, applies: np.ndarray, truncated: bool, tokens: int) -> Prediction:
        """A Prediction from one text's scores (C,) and which labels apply (C,)."""
        top = int(probs.argmax())
        return Prediction(
            label=self.labels[top],
            score=float(probs[top]),
            probs={label: float(p) for label, p in zip(self.labels, probs, strict=True)},
            truncated=truncated,
            tokens=tokens,
            labels=tuple(label for label, on in zip(self.labels, applies, strict=True) if on),
        )

    def _logits(self, encoded: list[Encoded]) -> np.ndarray:
        logits = np.zeros((len(encoded), len(self.labels)), dtype=np.float32)  # (N, C)
        for batch in buckets(encoded, self.options.max_batch, self.options.max_tokens, self._pad_id):
            logits[batch.indices] = self._forward(batch)
        return logits

    def _forward(self, batch: Batch) -> np.ndarray:
        if self._cuda is not None:
            logits = self._cuda(batch)  # type: ignore[operator]
        else:
            inputs = self.manifest.model.family.input_names  # the model's own inputs (bert14/family.py)
            logits = self._session.run(["logits"], batch.feeds(inputs))[0]  # type: ignore[attr-defined]
        if logits.shape != (len(batch.indices), len(self.labels)):  # (B, C)
            raise ArtifactError(
                f"{self.directory / self.model_file}: the model gives {logits.shape[-1]} scores per text, the "
                f"manifest names {len(self.labels)} labels; the two do not belong together (re-run export)"
            )
        return logits

    def describe(self) -> dict[str, object]:
        """What the HTTP server's /v1/model returns: what a client needs to read the answers, and a
        version to tell deployments apart; no paths of the build machine, no file hashes."""
        model = asdict(self.manifest.model)
        return {
            "labels": self.labels,
            "score_function": self.score_function,
            "thresholds": dict(zip(self.labels, self.thresholds.tolist(), strict=True)),
            "precision": self.precision,
            "provider": self.provider,
            "engine": self.engine,
            "max_length": self.max_length,
            "long_text": asdict(self.options.long_text),  # the default; a request may choose its own
            "model": {k: v for k, v in model.items() if k != "labels"},
            # The served file's sha256, shortened: changes exactly when the model does.
            "version": self.manifest.files[self.model_file][:16],
            "bert14_version": self.manifest.bert14_version,
        }


def _max_length(manifest: Manifest, settings: TokenizerSettings) -> int:
    """Tokens a row holds: the tokenizer's limit or the model's positions (less what the family reserves)."""
    return min(settings.model_max_length, manifest.model.max_tokens)  # type: ignore[type-var]


def _score_function(manifest: Manifest, directory: Path, num_labels: int) -> str:
    """The manifest's; artifacts written before it was recorded get what an unset problem_type means."""
    function = manifest.model.score_function or score_function(None, num_labels)
    if function not in FUNCTIONS:
        raise ArtifactError(f"{directory / 'manifest.json'}: expected score_function in {FUNCTIONS}, got {function!r}")
    return function
