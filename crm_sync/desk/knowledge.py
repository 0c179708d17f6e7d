"""The knowledge base (the contact centre's "wiki"): articles per category that
operators answer from, written and edited by admins, searched in Ukrainian.

Search (migration 0012): the 'simple' text-search configuration over words passed
through ``kb_uk_stems``, a light Ukrainian suffix stripper in SQL (PostgreSQL has
no Ukrainian snowball stemmer), matched by stem prefix; titles also match by
trigram word similarity, so a typo in a title word still finds the article.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from hotline.core.desk import FieldsInvalid
from hotline.core.errors import Conflict, InvalidInput, NotFound
from hotline.core.logs import get_logger

MAX_TITLE = 200
MAX_BODY = 20_000
MAX_KEYWORDS = 500
MAX_QUERY = 200
#: Title similarity for a typo: "опаленя" against "Опалення: коли вмикають".
TITLE_SIMILARITY = 0.45
log = get_logger("crm_sync.desk.knowledge")


class ArticleNotFound(NotFound):
    error_id = "kb_article_not_found"


class ArticleChanged(Conflict):
    error_id = "kb_article_changed"


@dataclass(frozen=True)
class ArticleFields:
    title: str
    body: str
    keywords: str
    category: str | None  # a category code; None: general
    active: bool = True


_SELECT = """
SELECT a.id, a.title, a.body, a.keywords, a.active, a.version, a.created_at, a.created_by,
       a.updated_at, a.updated_by, c.code AS category, c.name_uk AS category_name
FROM kb_articles a LEFT JOIN categories c ON c.id = a.category_id
"""


def check_fields(body: dict[str, Any]) -> ArticleFields:
    """The article's fields from a JSON body; every bad one is named at once."""
    errors: dict[str, str] = {}

    def text(name: str, limit: int, required: bool) -> str:
        raw = body.get(name, "")
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            errors[name] = "expected text"
            return ""
        value: str = raw.strip()
        if required and not value:
            errors[name] = "required"
        elif len(value) > limit:
            errors[name] = f"at most {limit} characters"
        return value

    title = text("title", MAX_TITLE, True)
    text_body = text("body", MAX_BODY, True)
    keywords = text("keywords", MAX_KEYWORDS, False)
    category = text("category", 100, False) or None
    active = body.get("active", True)
    if not isinstance(active, bool):
        errors["active"] = "expected true or false"
    if errors:
        raise FieldsInvalid(errors)
    return ArticleFields(title, text_body, keywords, category, bool(active))


async def _category_id(conn: asyncpg.Connection, code: str | None) -> int | None:
    if code is None:
        return None
    value: int | None = await conn.fetchval("SELECT id FROM categories WHERE code = $1", code)
    if value is None:
        raise FieldsInvalid({"category": f"unknown category {code!r}"})
    return value


async def create_article(pool: asyncpg.Pool, fields: ArticleFields, by: str) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        category_id = await _category_id(conn, fields.category)
        article_id = await conn.fetchval(
            """INSERT INTO kb_articles (category_id, title, body, keywords, active, created_by,
                   updated_by) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id""",
            category_id, fields.title, fields.body, fields.keywords, fields.active, by)
    log.info("kb_article_created", article_id=article_id, by=by)
    return await get_article(pool, article_id, include_inactive=True)


async def update_article(
    pool: asyncpg.Pool, article_id: int, fields: ArticleFields, by: str,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """A stale page's edit (another admin saved meanwhile) is refused, not lost."""
    async with pool.acquire() as conn, conn.transaction():
        category_id = await _category_id(conn, fields.category)
        version = await conn.fetchval(
            "SELECT version FROM kb_articles WHERE id = $1 FOR UPDATE", article_id)
        if version is None:
            raise ArticleNotFound(f"article {article_id} not found")
        if expected_version is not None and version != expected_version:
            raise ArticleChanged(f"article {article_id} changed meanwhile (version {version}); "
                                 "reload it", details={"version": version})
        await conn.execute(
            """UPDATE kb_articles SET category_id = $2, title = $3, body = $4, keywords = $5,
                   active = $6, updated_by = $7, updated_at = now(), version = version + 1
               WHERE id = $1""",
            article_id, category_id, fields.title, fields.body, fields.keywords,
            fields.active, by)
    log.info("kb_article_updated", article_id=article_id, by=by, active=fields.active)
    return await get_article(pool, article_id, include_inactive=True)


async def get_article(
    pool: asyncpg.Pool, article_id: int, *, include_inactive: bool = False
) -> dict[str, Any]:
    row = await pool.fetchrow(f"{_SELECT} WHERE a.id = $1 AND (a.active OR $2)",
                              article_id, include_inactive)
    if row is None:
        raise ArticleNotFound(f"article {article_id} not found")
    return dict(row)


async def search_articles(
    pool: asyncpg.Pool, text: str, *, category: str | None = None, limit: int = 20,
    include_inactive: bool = False,
) -> list[dict[str, Any]]:
    """Best first: full-text matches (title over keywords over body), then titles
    alike; with no words, the newest articles (of the category)."""
    text = " ".join((text or "").split())
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"q: at most {MAX_QUERY} characters", details={"field": "q"})
    if not 1 <= limit <= 100:
        raise InvalidInput("limit: 1 to 100", details={"field": "limit"})
    snippet = "left(a.body, 280) AS snippet"
    columns = ("a.id, a.title, a.active, a.version, a.updated_at, c.code AS category, "
               f"c.name_uk AS category_name, {snippet}")
    scope = "($1::text IS NULL OR c.code = $1) AND (a.active OR $2)"
    if not text:
        rows = await pool.fetch(
            f"""SELECT {columns}, 0::real AS rank FROM kb_articles a
                LEFT JOIN categories c ON c.id = a.category_id
                WHERE {scope} ORDER BY a.updated_at DESC, a.id DESC LIMIT $3""",
            category, include_inactive, limit)
    else:
        rows = await pool.fetch(
            f"""SELECT {columns},
                       (CASE WHEN a.search @@ q.tq THEN 1 + ts_rank(a.search, q.tq) ELSE 0 END
                        + word_similarity(lower($4), lower(a.title)))::real AS rank
                FROM kb_articles a LEFT JOIN categories c ON c.id = a.category_id,
                     (SELECT kb_uk_query($4) AS tq) q
                WHERE {scope}
                  AND (a.search @@ q.tq OR word_similarity(lower($4), lower(a.title)) >= $5)
                ORDER BY rank DESC, a.id DESC LIMIT $3""",
            category, include_inactive, limit, text, TITLE_SIMILARITY)
    return [{**dict(r), "rank": round(float(r["rank"]), 3)} for r in rows]


#: (category code or None, title, keywords, body): the demo's knowledge base, written
#: on a first run (``hotline demo``) so operators have something to search.
DEMO_ARTICLES = (
    ("heating_temperature", "Опалювальний сезон: коли вмикають і вимикають тепло",
     "батареї, опалення, температура",
     "Опалювальний сезон у Києві починають, коли середньодобова температура повітря три "
     "дні поспіль нижча за +8 °C, і завершують, коли вона три дні поспіль вища за +8 °C. "
     "Якщо в квартирі холодно під час сезону, реєструємо звернення «Незадовільна "
     "температура опалення»."),
    ("no_hot_water", "Планове відключення гарячої води на профілактику",
     "ГВП, гаряча вода, профілактика, ремонт",
     "Щоліта гарячу воду вимикають на профілактику мереж на строк до 14 діб за графіком "
     "Київтеплоенерго. Поза графіком відсутність гарячої води реєструємо як звернення."),
    ("billing_subsidies", "Як оформити житлову субсидію",
     "субсидія, пільги, соціальні виплати",
     "Заяву про призначення субсидії подають онлайн через портал Дія або до центру "
     "надання адміністративних послуг за місцем проживання. Для перерахунку вже призначеної "
     "субсидії реєструємо звернення «Розрахунки, нарахування субсидій»."),
    (None, "Загублені речі в громадському транспорті",
     "бюро знахідок, метро, автобус",
     "Речі, залишені в метро, передають до бюро знахідок Київського метрополітену; "
     "у наземному транспорті — до диспетчерської відповідного депо. Звернення не реєструємо."),
)


async def seed_demo_articles(pool: asyncpg.Pool, by: str = "demo") -> int:
    """The demo's articles when the knowledge base is empty; how many were written."""
    if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM kb_articles)"):
        return 0
    for category, title, keywords, body in DEMO_ARTICLES:
        await create_article(pool, ArticleFields(title, body, keywords, category), by)
    return len(DEMO_ARTICLES)
