//! The vectors of protocol doc §4, end to end across signature, crypto, message and reply.
