"""The taxonomy search of the appeal form (sphere → issue), typo-tolerant.

pg_trgm's ``word_similarity`` compares what the operator typed with the issue's
Ukrainian name, its sphere's name (weighted down: a sphere names many issues) and
the words callers use for it (``config/desk.toml``); a typo costs a few trigrams,
not the match ("асфальд" still finds "Укладання та ремонт асфальтного покриття").
The taxonomy is a few hundred rows at most: no index is needed for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from hotline.core.errors import InvalidInput

MAX_QUERY = 100
#: Below this the match is noise (pg_trgm's own default for word_similarity is 0.6;
#: a short query with one wrong letter scores about 0.4-0.5).
MIN_SCORE = 0.3
SPHERE_WEIGHT = 0.8

_SEARCH = """
SELECT * FROM (
    SELECT c.code, c.name_uk, c.name_en, s.code AS sphere, s.name_uk AS sphere_name,
           greatest(word_similarity($1, lower(c.name_uk)),
                    $2 * word_similarity($1, lower(s.name_uk)),
                    coalesce((SELECT max(word_similarity($1, lower(k.word)))
                              FROM unnest($3::text[], $4::text[]) AS k(code, word)
                              WHERE k.code = c.code), 0)) AS score
    FROM categories c JOIN spheres s ON s.id = c.sphere_id
    WHERE $5::text IS NULL OR s.code = $5
) hits
WHERE score >= $6
ORDER BY score DESC, name_uk
LIMIT $7
"""

_ALL = """
SELECT c.code, c.name_uk, c.name_en, s.code AS sphere, s.name_uk AS sphere_name,
       1.0::real AS score
FROM categories c JOIN spheres s ON s.id = c.sphere_id
WHERE $1::text IS NULL OR s.code = $1
ORDER BY s.share_percent DESC NULLS LAST, s.name_uk, c.name_uk
LIMIT $2
"""


async def search_taxonomy(
    pool: asyncpg.Pool, text: str, keywords: Mapping[str, tuple[str, ...]], *,
    sphere: str | None = None, limit: int = 10,
) -> list[dict[str, Any]]:
    """Issues best matching ``text`` first (all of them, or the sphere's, when empty)."""
    text = " ".join((text or "").split()).lower()
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"q: at most {MAX_QUERY} characters", details={"field": "q"})
    if not 1 <= limit <= 100:
        raise InvalidInput("limit: 1 to 100", details={"field": "limit"})
    if not text:
        rows = await pool.fetch(_ALL, sphere or None, limit)
    else:
        pairs = [(code, word) for code, words in keywords.items() for word in words]
        rows = await pool.fetch(_SEARCH, text, SPHERE_WEIGHT, [c for c, _ in pairs],
                                [w for _, w in pairs], sphere or None, MIN_SCORE, limit)
    return [{**dict(r), "score": round(float(r["score"]), 3)} for r in rows]
