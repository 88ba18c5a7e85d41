// The preload behaviour tests again, under the sanitizer build of the library (ASan + UBSan,
// native/preload/tests/sanitize.sh): a sanitizer report in a test program or in the SlimFast echo
// server they talk to fails.
import { preloadSuite } from './lib/preload-suite.js';

preloadSuite({ sanitized: true });
