-- Group commit of contributions (server/jackpot/batching.py, issue 6): a batch is written by
-- one statement whose counter-row updates are conditional on the rows being as the batch read
-- them (optimistic concurrency). When a row changed meanwhile, this function aborts the whole
-- statement with serialization_failure (SQLSTATE 40001), so nothing of the batch is written
-- and the server reads the rows again.
CREATE FUNCTION jp_batch_applied(updated bigint, expected bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF updated <> expected THEN
        RAISE EXCEPTION 'a counter row changed under a contribution batch'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END $$;
