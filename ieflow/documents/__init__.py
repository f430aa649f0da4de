"""Document parsing (pypdf, unstructured, Tesseract OCR) and structure-aware chunking."""

from ieflow.documents.chunk import Chunk, chunk_document, count_tokens
from ieflow.documents.parse import Element, ParsedDocument, doc_id_for, parse_file

__all__ = ["Chunk", "Element", "ParsedDocument", "chunk_document", "count_tokens", "doc_id_for", "parse_file"]
