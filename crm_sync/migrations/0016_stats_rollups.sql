-- Statistics (issue 11): half-hour rollups kept exact by triggers as calls are
-- written, so a report over ten years reads ~10^5 rows instead of 2·10^7.
--
-- The invariant the triggers keep: stats_queue_halfhour = Σ over queue_attempts of
-- stats_attempt_figures(attempt, its call's outcome, thresholds). An attempt
-- counts once its call is finished (outcome <> 'in_progress'); every rewrite of
-- a call (save_call replaces its attempts; the reconciler corrects them to
-- queue_log) subtracts the old contribution and adds the new one.
-- A bulk load sets `hotline.stats_bulk = on` in its session and refreshes the
-- rollups for the range it wrote (crm_sync/stats/rollup.py).

-- The thresholds the rollups were built with: '*' is every queue without a row.
-- `hotline stats-refresh` writes them from config and rebuilds.
CREATE TABLE stats_thresholds (
    queue         text PRIMARY KEY,
    service_level integer NOT NULL CHECK (service_level >= 0),  -- app_queue servicelevel
    short_abandon integer NOT NULL CHECK (short_abandon >= 0)   -- abandons below: not offered
);
INSERT INTO stats_thresholds VALUES ('*', 20, 5);

-- Wrap-up after the call (after-call work), when something measures it; Asterisk's
-- own wrapuptime is 0 in this deployment, so NULL counts as 0.
ALTER TABLE queue_attempts ADD COLUMN wrap_seconds integer;
CREATE INDEX queue_attempts_entered_idx ON queue_attempts (entered_at);
-- The operators' report and staffing read a period's state changes.
CREATE INDEX operator_state_changes_at_idx ON operator_state_changes (at);

CREATE TABLE stats_queue_halfhour (
    queue               text NOT NULL,
    slot                timestamptz NOT NULL,      -- start of the half-hour (entered the queue)
    offered             integer NOT NULL DEFAULT 0,  -- every attempt but short abandons
    answered            integer NOT NULL DEFAULT 0,
    abandoned           integer NOT NULL DEFAULT 0,  -- short abandons excluded
    short_abandoned     integer NOT NULL DEFAULT 0,
    timed_out           integer NOT NULL DEFAULT 0,
    callbacks           integer NOT NULL DEFAULT 0,
    answered_within     integer NOT NULL DEFAULT 0,  -- wait <= service_level
    abandoned_within    integer NOT NULL DEFAULT 0,  -- all abandons (as app_queue counts them)
    wait_answered       bigint NOT NULL DEFAULT 0,   -- Σ wait of answered
    max_wait            integer NOT NULL DEFAULT 0,  -- over offered
    talk                bigint NOT NULL DEFAULT 0,
    wrap                bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (slot, queue)
);
CREATE INDEX stats_queue_halfhour_queue_idx ON stats_queue_halfhour (queue, slot);

-- The same per city day: reports by day, week and month over years read ~15,000
-- rows for ten years instead of ~700,000.
CREATE TABLE stats_queue_day (LIKE stats_queue_halfhour INCLUDING DEFAULTS);
ALTER TABLE stats_queue_day DROP COLUMN slot;
ALTER TABLE stats_queue_day ADD COLUMN day date NOT NULL;
ALTER TABLE stats_queue_day ADD PRIMARY KEY (day, queue);

CREATE TABLE stats_operator_halfhour (
    operator_interface text NOT NULL,
    queue              text NOT NULL,
    slot               timestamptz NOT NULL,
    operator_name      text NOT NULL DEFAULT '',
    calls              integer NOT NULL DEFAULT 0,
    talk               bigint NOT NULL DEFAULT 0,
    wrap               bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (slot, operator_interface, queue)
);

-- Per call (not attempt): the survey score and the disposition, by the call's
-- operator; and callbacks (ivr-b: booked in the IVR instead of waiting, so the
-- call never entered a queue and has no attempt), by the queue it was routed to.
CREATE TABLE stats_operator_call_day (
    operator_interface text NOT NULL,
    day                date NOT NULL,               -- the city's day of calls.started_at
    disposition        text NOT NULL DEFAULT '',    -- '' = none
    calls              integer NOT NULL DEFAULT 0,
    survey_n           integer NOT NULL DEFAULT 0,
    survey_sum         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, operator_interface, disposition)
);

CREATE TABLE stats_ivr_day (
    day    date NOT NULL,
    step   text NOT NULL,
    option text NOT NULL DEFAULT '',  -- the digit, the attempt or where the caller gave up
    steps  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, step, option)
);

CREATE FUNCTION stats_slot(at timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM at) / 1800) * 1800)
$$;

CREATE FUNCTION stats_city_day(at timestamptz) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT (at AT TIME ZONE 'Europe/Kyiv')::date
$$;

CREATE FUNCTION stats_bulk() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('hotline.stats_bulk', true), '') = 'on'
$$;

-- One attempt's figures (a row of zeros while its call is in progress).
CREATE FUNCTION stats_attempt_figures(a queue_attempts, call_outcome text, sign integer)
RETURNS stats_queue_halfhour LANGUAGE plpgsql STABLE AS $$
DECLARE
    r stats_queue_halfhour;
    sl integer;
    short integer;
    w integer := coalesce(a.wait_seconds, 0);
    o text := coalesce(a.outcome, '');
    is_abandon boolean;
    is_short boolean;
BEGIN
    r.queue := a.queue;
    r.slot := stats_slot(a.entered_at);
    r.offered := 0; r.answered := 0; r.abandoned := 0; r.short_abandoned := 0;
    r.timed_out := 0; r.callbacks := 0; r.answered_within := 0; r.abandoned_within := 0;
    r.wait_answered := 0; r.max_wait := 0; r.talk := 0; r.wrap := 0;
    IF call_outcome IS NULL OR call_outcome = 'in_progress' THEN
        RETURN r;
    END IF;
    SELECT t.service_level, t.short_abandon INTO sl, short FROM stats_thresholds t
     WHERE t.queue IN (a.queue, '*') ORDER BY t.queue = '*' LIMIT 1;
    is_abandon := o = 'abandoned';
    is_short := is_abandon AND w < short;
    r.offered := sign * (NOT is_short)::integer;
    r.answered := sign * (o = 'answered')::integer;
    r.abandoned := sign * (is_abandon AND NOT is_short)::integer;
    r.short_abandoned := sign * is_short::integer;
    r.timed_out := sign * (o = 'timeout')::integer;
    r.callbacks := 0;  -- a callback is booked in the IVR, before any queue: see the call
    r.answered_within := sign * (o = 'answered' AND w <= sl)::integer;
    r.abandoned_within := sign * (is_abandon AND w <= sl)::integer;
    IF o = 'answered' THEN
        r.wait_answered := sign * w;
        r.talk := sign * coalesce(a.talk_seconds, 0);
        r.wrap := sign * coalesce(a.wrap_seconds, 0);
    END IF;
    r.max_wait := CASE WHEN is_short THEN 0 ELSE w END;
    RETURN r;
END $$;

-- The day's row moves by the same figures; its longest wait is its half-hours'.
CREATE FUNCTION stats_apply_day(q text, d date, f stats_queue_halfhour, sign integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_queue_day AS s (queue, day, offered, answered, abandoned, short_abandoned,
        timed_out, callbacks, answered_within, abandoned_within, wait_answered, max_wait, talk,
        wrap)
    VALUES (q, d, f.offered, f.answered, f.abandoned, f.short_abandoned, f.timed_out,
            f.callbacks, f.answered_within, f.abandoned_within, f.wait_answered,
            CASE WHEN sign > 0 THEN f.max_wait ELSE 0 END, f.talk, f.wrap)
    ON CONFLICT (day, queue) DO UPDATE SET
        offered = s.offered + f.offered, answered = s.answered + f.answered,
        abandoned = s.abandoned + f.abandoned,
        short_abandoned = s.short_abandoned + f.short_abandoned,
        timed_out = s.timed_out + f.timed_out, callbacks = s.callbacks + f.callbacks,
        answered_within = s.answered_within + f.answered_within,
        abandoned_within = s.abandoned_within + f.abandoned_within,
        wait_answered = s.wait_answered + f.wait_answered,
        max_wait = CASE WHEN sign > 0 THEN greatest(s.max_wait, f.max_wait) ELSE s.max_wait END,
        talk = s.talk + f.talk, wrap = s.wrap + f.wrap;
    IF sign < 0 AND f.max_wait > 0 THEN
        UPDATE stats_queue_day s SET max_wait = coalesce((
            SELECT max(h.max_wait) FROM stats_queue_halfhour h
             WHERE h.queue = q AND stats_city_day(h.slot) = d
               AND h.slot >= d::timestamp AT TIME ZONE 'Europe/Kyiv' - interval '1 hour'
               AND h.slot < (d + 1)::timestamp AT TIME ZONE 'Europe/Kyiv' + interval '1 hour'),
            0)
         WHERE s.day = d AND s.queue = q;
    END IF;
END $$;

CREATE FUNCTION stats_apply_attempt(a queue_attempts, call_outcome text, sign integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f stats_queue_halfhour := stats_attempt_figures(a, call_outcome, sign);
BEGIN
    IF call_outcome IS NULL OR call_outcome = 'in_progress' THEN
        RETURN;  -- counted once the call is finished
    END IF;
    INSERT INTO stats_queue_halfhour AS s VALUES (f.*)
    ON CONFLICT (slot, queue) DO UPDATE SET
        offered = s.offered + f.offered, answered = s.answered + f.answered,
        abandoned = s.abandoned + f.abandoned,
        short_abandoned = s.short_abandoned + f.short_abandoned,
        timed_out = s.timed_out + f.timed_out, callbacks = s.callbacks + f.callbacks,
        answered_within = s.answered_within + f.answered_within,
        abandoned_within = s.abandoned_within + f.abandoned_within,
        wait_answered = s.wait_answered + f.wait_answered,
        max_wait = CASE WHEN sign > 0 THEN greatest(s.max_wait, f.max_wait) ELSE s.max_wait END,
        talk = s.talk + f.talk, wrap = s.wrap + f.wrap;
    -- A maximum cannot be subtracted: recount the slot when its longest wait left.
    IF sign < 0 AND f.max_wait > 0 THEN
        UPDATE stats_queue_halfhour s SET max_wait = coalesce((
            SELECT max(coalesce(q.wait_seconds, 0))
              FROM queue_attempts q JOIN calls c ON c.id = q.call_id
             WHERE q.queue = f.queue AND q.entered_at >= f.slot
               AND q.entered_at < f.slot + interval '30 minutes'
               AND c.outcome <> 'in_progress' AND q.id <> a.id
               AND (stats_attempt_figures(q, c.outcome, 1)).offered = 1), 0)
         WHERE s.slot = f.slot AND s.queue = f.queue AND s.max_wait <= f.max_wait;
    END IF;
    PERFORM stats_apply_day(f.queue, stats_city_day(a.entered_at), f, sign);
    IF a.outcome = 'answered' AND a.operator_interface IS NOT NULL THEN
        INSERT INTO stats_operator_halfhour AS o
            (operator_interface, queue, slot, operator_name, calls, talk, wrap)
        VALUES (a.operator_interface, a.queue, f.slot, coalesce(a.operator_name, ''),
                sign, f.talk, f.wrap)
        ON CONFLICT (slot, operator_interface, queue) DO UPDATE SET
            calls = o.calls + sign, talk = o.talk + f.talk, wrap = o.wrap + f.wrap,
            operator_name = CASE WHEN EXCLUDED.operator_name <> ''
                                 THEN EXCLUDED.operator_name ELSE o.operator_name END;
    END IF;
END $$;

CREATE FUNCTION stats_queue_attempts_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    call_outcome text;
BEGIN
    IF stats_bulk() THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT outcome INTO call_outcome FROM calls WHERE id = OLD.call_id;
        PERFORM stats_apply_attempt(OLD, call_outcome, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT outcome INTO call_outcome FROM calls WHERE id = NEW.call_id;
        PERFORM stats_apply_attempt(NEW, call_outcome, 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_queue_attempts AFTER INSERT OR UPDATE OR DELETE ON queue_attempts
    FOR EACH ROW EXECUTE FUNCTION stats_queue_attempts_trigger();

-- The per-call figures; to_jsonb reads survey_score and disposition whether or
-- not the migrations that add them have run yet.
CREATE FUNCTION stats_apply_call(c calls, sign integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    j jsonb := to_jsonb(c);
    score integer := nullif(j ->> 'survey_score', '')::integer;
BEGIN
    IF c.outcome = 'callback' AND c.queue IS NOT NULL THEN
        INSERT INTO stats_queue_halfhour AS s (queue, slot, callbacks)
        VALUES (c.queue, stats_slot(c.started_at), sign)
        ON CONFLICT (slot, queue) DO UPDATE SET callbacks = s.callbacks + sign;
        INSERT INTO stats_queue_day AS s (queue, day, callbacks)
        VALUES (c.queue, stats_city_day(c.started_at), sign)
        ON CONFLICT (day, queue) DO UPDATE SET callbacks = s.callbacks + sign;
    END IF;
    IF c.outcome = 'in_progress' OR c.operator_interface IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO stats_operator_call_day AS d
        (operator_interface, day, disposition, calls, survey_n, survey_sum)
    VALUES (c.operator_interface, stats_city_day(c.started_at),
            coalesce(j ->> 'disposition', ''), sign,
            sign * (score IS NOT NULL)::integer, sign * coalesce(score, 0))
    ON CONFLICT (day, operator_interface, disposition) DO UPDATE SET
        calls = d.calls + EXCLUDED.calls, survey_n = d.survey_n + EXCLUDED.survey_n,
        survey_sum = d.survey_sum + EXCLUDED.survey_sum;
END $$;

CREATE FUNCTION stats_calls_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    a queue_attempts;
BEGIN
    IF stats_bulk() THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NULL END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        -- before the cascade, while the call's outcome can still be read
        DELETE FROM queue_attempts WHERE call_id = OLD.id;
        PERFORM stats_apply_call(OLD, -1);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.outcome IS DISTINCT FROM NEW.outcome THEN
            FOR a IN SELECT * FROM queue_attempts WHERE call_id = NEW.id LOOP
                PERFORM stats_apply_attempt(a, OLD.outcome, -1);
                PERFORM stats_apply_attempt(a, NEW.outcome, 1);
            END LOOP;
        END IF;
        PERFORM stats_apply_call(OLD, -1);
    END IF;
    PERFORM stats_apply_call(NEW, 1);
    RETURN NULL;
END $$;

CREATE TRIGGER stats_calls_delete BEFORE DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION stats_calls_trigger();
CREATE TRIGGER stats_calls AFTER INSERT OR UPDATE ON calls
    FOR EACH ROW EXECUTE FUNCTION stats_calls_trigger();

-- IVR steps are written once each (ON CONFLICT DO NOTHING fires no row trigger).
-- The option of a step that the IVR path report counts apart: the digit chosen,
-- where the caller gave up, whether a notice was heard or skipped, a callback
-- accepted... (step names and details: ivr/flows/).
CREATE FUNCTION stats_ivr_option(step text, detail jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(CASE step
        WHEN 'choice' THEN coalesce(nullif(detail ->> 'digit', ''), detail ->> 'reason')
        WHEN 'invalid' THEN detail ->> 'digit'
        WHEN 'route' THEN detail ->> 'queue'
        WHEN 'hangup' THEN (detail ->> 'during')
            || CASE WHEN detail ->> 'after_notice' = 'true' THEN ' (after notice)' ELSE '' END
        WHEN 'error' THEN detail ->> 'during'
        WHEN 'greeting' THEN CASE WHEN detail ->> 'pressed' <> '' THEN 'pressed' ELSE '' END
        WHEN 'notice' THEN CASE WHEN detail ->> 'skipped' = 'true' THEN 'skipped' ELSE 'heard' END
        WHEN 'hours' THEN CASE WHEN detail ->> 'open' = 'false' THEN 'closed' ELSE 'open' END
        WHEN 'callback_offer' THEN CASE WHEN detail ->> 'accepted' = 'true' THEN 'accepted'
                                        ELSE 'declined' END
        WHEN 'callback_booked' THEN detail ->> 'reason'
        WHEN 'callback_refused' THEN detail ->> 'why'
        WHEN 'exit' THEN detail ->> 'exit'
        WHEN 'wait_estimate' THEN ''
        ELSE coalesce(detail ->> 'option', detail ->> 'attempt')
    END, '')
$$;

CREATE FUNCTION stats_ivr_steps_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF stats_bulk() THEN
        RETURN NULL;
    END IF;
    INSERT INTO stats_ivr_day AS d (day, step, option, steps)
    VALUES (stats_city_day(NEW.at), NEW.step, stats_ivr_option(NEW.step, NEW.detail), 1)
    ON CONFLICT (day, step, option) DO UPDATE SET steps = d.steps + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER stats_ivr_steps AFTER INSERT ON ivr_steps
    FOR EACH ROW EXECUTE FUNCTION stats_ivr_steps_trigger();
