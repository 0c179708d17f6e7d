-- Post-call survey (issue 9, ivr/flows/survey.py): the caller's score of the call
-- with the operator, 1 to 5; NULL when not asked or not answered. On the call,
-- and so on its operator through calls.operator_interface.
ALTER TABLE calls
    ADD COLUMN survey_score smallint CHECK (survey_score BETWEEN 1 AND 5);
CREATE INDEX calls_operator_survey_idx ON calls (operator_interface, started_at)
    WHERE survey_score IS NOT NULL;
