"""Replaying recorded sessions into a bot: the driver, the turn-by-turn comparison and verdict, the diff;
a corpus of sessions in one run, its shards merged, the build under test started and stopped."""
