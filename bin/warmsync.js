#!/usr/bin/env -S node --max-semi-space-size=4
// V8's young generation capped at 4 MiB per semi-space (16 by default): an agent's first sync of
// 100,000 files peaked at 215-223 MB RSS with ~50 MB of live heap, the rest mostly short-lived
// garbage waiting for a scavenge; with the cap, 196 MB, at no CPU cost measured (docs/benchmarks.md,
// "Performance work, session 5"). `node bin/warmsync.js` skips this line: run the file itself, as
// the installed command and the systemd units do.
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
