//! The Lua scripts, loaded once (EVALSHA, falling back to EVAL after a server restart). Each
//! `.lua` file's header names its KEYS and ARGV.

use redis::Script;

/// Every script the store runs.
pub struct Scripts {
    pub commit: Script,
    pub claim: Script,
    pub settle: Script,
    pub enqueue: Script,
    /// Deletes `KEYS[1]` only while it holds `ARGV[1]`.
    pub delete_if: Script,
    /// Deletes `KEYS[1]` only while its JSON's `media_id` is `ARGV[1]`.
    pub forget_media: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            commit: Script::new(include_str!("commit.lua")),
            claim: Script::new(include_str!("claim.lua")),
            settle: Script::new(include_str!("settle.lua")),
            enqueue: Script::new(include_str!("enqueue.lua")),
            delete_if: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            ),
            forget_media: Script::new(
                "local v = redis.call('GET', KEYS[1]) \
                 if not v then return 0 end \
                 local ok, e = pcall(cjson.decode, v) \
                 if ok and type(e) == 'table' and e.media_id == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
                 return 0",
            ),
        }
    }
}
