-- Retention of finished work: `syntera maintenance retention` deletes the agent replies
-- and insight jobs finished (done or failed) longer than SYNTERA_WORK_RETENTION_DAYS ago,
-- in batches, across companies: each index holds the rows one delete reads, in order of
-- their finish time, so a batch reads only what it deletes. A reply that used tokens is
-- kept through its month (the company's budget counts it), hence its own index.
CREATE INDEX agent_replies_finished_free ON syntera.agent_replies (finished_at)
  WHERE status IN ('done', 'failed') AND tokens_used = 0;
CREATE INDEX agent_replies_finished_paid ON syntera.agent_replies (finished_at)
  WHERE status IN ('done', 'failed') AND tokens_used > 0;
CREATE INDEX insight_jobs_finished_at ON syntera.insight_jobs (finished_at)
  WHERE status IN ('done', 'failed');
