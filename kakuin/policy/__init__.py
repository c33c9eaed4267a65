"""Pure policy: profiles, validity schedule, subject rules, key rules. No I/O."""
