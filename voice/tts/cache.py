"""A phrase cache in front of any Synthesizer.

Most of what CareCall says is templated (greetings, protocol questions, safety-net advice) and
repeats across thousands of calls, and the dialogue knows its likely next questions ahead of time.
Cached clauses cost no synthesis at all, which takes TTS off the latency path for them; `prefetch`
renders upcoming phrases in the background before they are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable

from voice.audio import Pcm
from voice.ports import Synthesizer


class CachingSynthesizer:
    def __init__(self, inner: Synthesizer, *, max_phrases: int = 1024, max_chars: int = 160) -> None:
        self.inner = inner
        self.language = inner.language
        self.sample_rate = inner.sample_rate
        self._cache: OrderedDict[str, tuple[Pcm, ...]] = OrderedDict()
        # What the start-up warm-up rendered (voice.tts.warm): the fixed phrases, kept for the process's
        # life, so free text in thousands of calls never evicts the greeting or a protocol question.
        self._fixed: dict[str, tuple[Pcm, ...]] = {}
        self._max = max_phrases
        self._max_chars = max_chars  # long free text (LLM replies) rarely repeats: don't keep it
        self._inflight: dict[str, asyncio.Task[tuple[Pcm, ...]]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(text: str) -> str:
        return " ".join(text.split())

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        key = self._key(text)
        cached = self._fixed.get(key) or self._cache.get(key)
        if cached is None and key in self._inflight:
            # being prefetched right now: wait for it rather than render it twice
            with contextlib.suppress(Exception):
                cached = await asyncio.shield(self._inflight[key])
        if cached is not None:
            self.hits += 1
            if key in self._cache:
                self._cache.move_to_end(key)
            for chunk in cached:
                yield chunk
            return
        self.misses += 1
        chunks: list[Pcm] = []
        async for chunk in self.inner.synthesize(text):
            chunks.append(chunk)
            yield chunk
        self._store(key, tuple(chunks))

    def _store(self, key: str, chunks: tuple[Pcm, ...], *, fixed: bool = False) -> None:
        if not chunks or len(key) > self._max_chars:
            return
        if fixed:
            self._fixed[key] = chunks
            self._cache.pop(key, None)
            return
        if key in self._fixed:
            return
        self._cache[key] = chunks
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    async def _render(self, key: str, *, fixed: bool = False) -> tuple[Pcm, ...]:
        try:
            chunks = tuple([c async for c in self.inner.synthesize(key)])
            self._store(key, chunks, fixed=fixed)
            return chunks
        finally:
            self._inflight.pop(key, None)

    def prefetch(self, texts: Iterable[str]) -> None:
        """Render these phrases in the background (fire and forget; failures are ignored)."""
        for text in texts:
            key = self._key(text)
            if key and key not in self and key not in self._inflight and len(key) <= self._max_chars:
                self._inflight[key] = asyncio.ensure_future(self._render(key))

    async def warm(self, text: str) -> bool:
        """Render one fixed phrase now unless it is cached (start-up warming) and keep it for good; True
        when it is cached after."""
        key = self._key(text)
        if not key or len(key) > self._max_chars:
            return False
        if key in self._inflight:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._inflight[key])
        if key in self._cache:
            self._store(key, self._cache[key], fixed=True)
        if key in self._fixed:
            return True
        self._inflight[key] = task = asyncio.ensure_future(self._render(key, fixed=True))
        await task
        return key in self._fixed

    def __contains__(self, text: str) -> bool:
        key = self._key(text)
        return key in self._fixed or key in self._cache
