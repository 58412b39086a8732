-- The knowledge base: a processing queue on knowledge_base_documents and the chunks with
-- their embeddings (pgvector, the default vector store).
--
-- Documents are the queue. A worker (service_role) claims the oldest due document with
-- FOR UPDATE SKIP LOCKED, marks it `processing` under a lease and a fresh lease token, and
-- finishes it in one transaction that only commits while the token is still its own. A
-- worker that dies leaves the document `processing` with an expired lease: the next claim
-- takes it again. Retries wait `run_after`; the reason of each failure is kept in
-- metadata.error.

CREATE EXTENSION IF NOT EXISTS vector;

ALTER TABLE public.knowledge_base_documents
  ADD COLUMN content_type text NOT NULL DEFAULT 'text/plain',
  ADD COLUMN size_bytes bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
  ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  ADD COLUMN run_after timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN lease_token uuid,
  ADD COLUMN lease_expires_at timestamptz;

-- What a claim scans: due pending documents and processing ones whose lease ran out.
CREATE INDEX idx_kb_documents_queue ON public.knowledge_base_documents (run_after)
  WHERE status IN ('pending', 'processing');

CREATE TABLE public.knowledge_base_chunks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  company_id uuid NOT NULL,
  document_id uuid NOT NULL,
  agent_id uuid,
  chunk_index integer NOT NULL CHECK (chunk_index >= 0),
  content text NOT NULL,
  -- all-MiniLM-L6-v2's dimension; an OpenAI-compatible provider is asked for the same.
  embedding vector(384) NOT NULL,
  content_search tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  UNIQUE (document_id, chunk_index),
  FOREIGN KEY (company_id, document_id)
    REFERENCES public.knowledge_base_documents (company_id, id) ON DELETE CASCADE
);

-- Cosine distance on normalised embeddings. Searches filter by company under RLS; with
-- hnsw.iterative_scan the index keeps scanning until top_k rows of that company are found.
CREATE INDEX idx_kb_chunks_embedding ON public.knowledge_base_chunks
  USING hnsw (embedding vector_cosine_ops);
CREATE INDEX idx_kb_chunks_search ON public.knowledge_base_chunks USING gin (content_search);
CREATE INDEX idx_kb_chunks_company_document
  ON public.knowledge_base_chunks (company_id, document_id);

ALTER TABLE public.knowledge_base_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_base_chunks FORCE ROW LEVEL SECURITY;

-- Members read their company's chunks (search) and delete them with their documents;
-- only the worker (service_role) writes them.
GRANT SELECT, DELETE ON public.knowledge_base_chunks TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.knowledge_base_chunks TO service_role;

CREATE POLICY kb_chunks_select ON public.knowledge_base_chunks FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY kb_chunks_delete ON public.knowledge_base_chunks FOR DELETE TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
