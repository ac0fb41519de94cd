// Anchor of the shared precompiled header (tests/pch.h) that every suite reuses.
