-- The operator's in-call panel (issue 8, desk-form): how a call ended, the
-- knowledge-base article the operator answered from, and the knowledge base.

-- The one catalogue of dispositions is hotline.core.desk.Disposition;
-- tests/integration/test_call_panel.py compares it with this constraint.
ALTER TABLE calls
    ADD COLUMN disposition text CHECK (disposition IN (
        'appeal_created', 'consultation', 'transferred', 'dropped', 'abusive')),
    ADD COLUMN kb_article_id bigint;

-- pg_trgm (0006 created it; repeated so this file stands on its own): the typo-
-- tolerant taxonomy search and article titles.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Ukrainian full-text search. PostgreSQL ships no Ukrainian snowball stemmer (nor
-- an ispell dictionary we could rely on), so the 'simple' configuration indexes
-- the words after this light stemmer: lower case, apostrophes dropped (під'їзд is
-- one word, not під + їзд), then ONE inflectional ending stripped when at least
-- three letters stay. "опалення", "опаленням", "опаленні" all index as "опаленн";
-- queries go through the same function and match stems by prefix (:*), so a word
-- typed with another ending still finds the article. Verb infinitives (-ти, -ть)
-- are left alone: stripped, "ліфти" would index as "ліф" and "ліфт" miss it. IMMUTABLE: the index and the
-- generated column below rely on it; changing it needs a new migration that
-- rebuilds both.
CREATE FUNCTION kb_uk_stems(input text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT coalesce(string_agg(
               regexp_replace(w,
                   '^(.{3,}?)(ування|ювання|ього|ьому|ьої|ього|ами|ями|ові|еві|єві|ого|ому|ими|іми|ість|ості|ою|ею|єю|ом|ем|єм|ів|їв|ей|ам|ям|ах|ях|их|іх|ий|ій|ім|им|ої|ють|уть|ять|ать|ся|сь|а|я|о|е|є|и|і|ї|у|ю|ь)$',
                   '\1'),
               ' ' ORDER BY n), '')
    FROM regexp_split_to_table(
             regexp_replace(lower(translate(input, '''’ʼ`', '')), '[^0-9a-zа-яґєії]+', ' ', 'g'),
             ' ') WITH ORDINALITY AS t(w, n)
    WHERE w <> ''
$$;

-- The query of a search box: every stem must occur, as the start of a word.
CREATE FUNCTION kb_uk_query(input text) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT to_tsquery('simple', string_agg(w || ':*', ' & '))
    FROM regexp_split_to_table(kb_uk_stems(input), ' ') AS t(w)
    WHERE w <> ''
$$;

CREATE TABLE kb_articles (
    id          bigserial PRIMARY KEY,
    category_id integer REFERENCES categories (id),  -- NULL: not about one category
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    keywords    text NOT NULL DEFAULT '' CHECK (length(keywords) <= 500),
    active      boolean NOT NULL DEFAULT true,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    search      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', kb_uk_stems(title)), 'A')
        || setweight(to_tsvector('simple', kb_uk_stems(keywords)), 'B')
        || setweight(to_tsvector('simple', kb_uk_stems(body)), 'C')) STORED
);
CREATE INDEX kb_articles_search_idx ON kb_articles USING gin (search);
CREATE INDEX kb_articles_category_idx ON kb_articles (category_id) WHERE active;

ALTER TABLE calls ADD CONSTRAINT calls_kb_article_fk
    FOREIGN KEY (kb_article_id) REFERENCES kb_articles (id) ON DELETE SET NULL;
