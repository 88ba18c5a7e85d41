// Runs every preload behaviour test program (native/preload/tests/t_*.c) under LD_PRELOAD inside a
// container of a two-host topology, against a SlimFast echo server on the other host.
import { preloadSuite } from './lib/preload-suite.js';

preloadSuite({ sanitized: false });
