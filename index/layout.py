"""Names of the files in an index directory (the manifest lists them with sizes and checksums)."""

STORE = "consultations.sqlite"
BM25_QUESTION = "bm25_question"  # bm25s directory: title + question
BM25_REPLY = "bm25_reply"  # bm25s directory: reply + more info
QUESTION_VECTORS = "question_vectors.npy"  # one unit vector per consultation
REPLY_VECTORS = "reply_vectors.npy"  # one unit vector per reply passage
REPLY_OFFSETS = "reply_offsets.npy"  # passages of row i are offsets[i]:offsets[i + 1]
QUESTION_FAISS = "question.faiss"
REPLY_FAISS = "reply.faiss"
