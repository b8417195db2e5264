//! An offline OpenAI-compatible model server (in progress).
