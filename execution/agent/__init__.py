"""The AI work agent: CODE_FIX requests prepared by a coding agent in an isolated git worktree,
checked by GUARDiA (diff from git, scope, build, tests), validated by a PM, then deployed
through the normal approval policy and the rolling engine (docs/agent.md)."""
