// Churn and soak at a bounded size (bench/soak.ts; `npm run soak` runs it at full size): container
// register/unregister cycles and short connections leave both brokers' descriptors and memory
// flat, and every connection went through SlimFast.
import test from 'ava';
import { DEFAULT_LIMITS, ERROR_COUNTERS, formatSoak, runSoak, verdict } from '../bench/soak.js';

const CYCLES = 100;
const CONNECTIONS = 10_000;

test('register/unregister cycles and short connections leave the brokers flat', async (t) => {
  t.timeout(170_000);
  const r = await runSoak({ cycles: CYCLES, connections: CONNECTIONS, settleMs: 2000 });
  t.log(`\n${formatSoak(r)}`);
  for (const g of r.growth) {
    t.log(
      `broker ${g.host}: fds ${g.fds_warm} → ${g.fds_end}; RSS ${(g.rss_kb_warm / 1024).toFixed(1)} → ${(g.rss_kb_end / 1024).toFixed(1)} MB ` +
        `(${(g.rss_kb_growth / 1024).toFixed(1)} MB; floor ${(g.rss_kb_floor_growth / 1024).toFixed(1)} MB)`,
    );
  }

  // the work was done, and every connection succeeded
  t.is(r.work.cycles, CYCLES);
  t.is(r.work.listener_cycles, CYCLES / 5);
  t.is(r.work.client_cycles, CYCLES / 10);
  t.is(r.work.cross_host + r.work.same_host, CONNECTIONS);
  t.is(r.work.client_errors, 0, r.work.first_error);
  t.is(r.work.client_missing, 0);

  // … through SlimFast: host 1's broker handed out every cross-host one and paired every same-host
  // one (the warm-up's and the cycles' included), host 2's took them in; none fell back or failed
  const [h1, h2] = r.counters.map((c) => c.delta);
  const cross = r.work.cross_host + r.work.warm_cross_host + r.work.churn_cross_host;
  const same = r.work.same_host + r.work.warm_same_host + r.work.churn_same_host;
  t.is(h1.handed_out, cross);
  t.is(h2.handed_in, cross);
  t.is(h1.same_host, same);
  t.true(h1.pool_taken >= 0.9 * (cross + same), `${h1.pool_taken} of ${cross + same} connects took a pooled socket`);
  for (const c of r.counters) {
    for (const n of ERROR_COUNTERS) t.is(c.delta[n], 0, `host ${c.host}: ${n}`);
    t.is(c.delta.plain_accepts, 0, `host ${c.host}: plain_accepts`);
  }
  // one listener per listener cycle (and the warm-up's two), each removed again
  t.is(h1.listen_ok, r.work.listener_cycles + 2);
  t.is(h1.listeners, 0);
  t.is(h1.containers, 0);

  // flat: descriptors back where they were after the warm-up, memory within bounds
  for (const g of r.growth) {
    t.true(g.fds_growth <= DEFAULT_LIMITS.fdSlack, `broker ${g.host}: ${g.fds_warm} → ${g.fds_end} descriptors`);
    t.true(g.rss_kb_growth <= DEFAULT_LIMITS.rssGrowthKb, `broker ${g.host}: RSS +${g.rss_kb_growth} kB`);
    t.true(g.rss_kb_floor_growth <= DEFAULT_LIMITS.rssFloorKb, `broker ${g.host}: RSS floor +${g.rss_kb_floor_growth} kB`);
  }
  t.deepEqual(verdict(r), []);
  t.true(r.duration_s < 120, `${r.duration_s.toFixed(0)} s`);
});
