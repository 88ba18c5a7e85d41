import test from 'ava';
import { SpecError, type Spec } from '../spec.js';
import { baseSpec, clone, testCtx } from '../testing.js';
import { seccomp, type SeccompProfile } from './seccomp.js';

const LISTENER = '/run/sf-test/seccomp.sock';
const annotated = (value = 'true', profile?: SeccompProfile): Spec => {
  const spec = baseSpec();
  spec.annotations = { 'io.slimfast.seccomp': value };
  if (profile) spec.linux!.seccomp = profile;
  return spec;
};
const profileOf = (spec: Spec) => spec.linux!.seccomp as SeccompProfile;

const ALL = ['connect', 'getsockname', 'getpeername', 'listen', 'accept', 'accept4'];

test("without a profile: allow everything, notify connect (and the address calls), listener = the broker's seccomp socket, metadata = the id", (t) => {
  const spec = annotated();
  seccomp.modify(spec, testCtx());
  t.deepEqual(spec.linux!.seccomp, {
    defaultAction: 'SCMP_ACT_ALLOW',
    listenerPath: LISTENER,
    listenerMetadata: 'c1',
    syscalls: [{ names: ALL, action: 'SCMP_ACT_NOTIFY' }],
  });
  t.deepEqual(spec.linux!.maskedPaths, ['/proc/kcore'], 'the rest of linux stays');
});

test('idempotent, with and without a profile of its own', (t) => {
  const docker: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [
      { names: ['accept', 'connect', 'read'], action: 'SCMP_ACT_ALLOW' },
      { names: ['ptrace'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    ],
  };
  for (const spec of [annotated(), annotated('yes', clone(docker))]) {
    seccomp.modify(spec, testCtx());
    const once = clone(spec);
    seccomp.modify(spec, testCtx());
    t.deepEqual(spec, once);
  }
});

test("keeps the container's profile: connect moves from its allow rule to the notify rule, unknown fields stay", (t) => {
  const spec = annotated('true', {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    architectures: ['SCMP_ARCH_X86_64'],
    flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
    syscalls: [
      { names: ['accept', 'connect', 'getpeername', 'read'], action: 'SCMP_ACT_ALLOW', comment: 'kept' },
      { names: ['ptrace'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    ],
  });
  seccomp.modify(spec, testCtx());
  t.deepEqual(spec.linux!.seccomp, {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    architectures: ['SCMP_ARCH_X86_64'],
    flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
    syscalls: [
      { names: ['read'], action: 'SCMP_ACT_ALLOW', comment: 'kept' },
      { names: ['ptrace'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
      { names: ['connect', 'getpeername', 'accept'], action: 'SCMP_ACT_NOTIFY' },
    ],
    listenerPath: LISTENER,
    listenerMetadata: 'c1',
  });
  // getsockname, listen and accept4 are denied by that profile's default: they stay denied.
  // A rule that allowed connect alone goes away rather than stay with no names.
  const alone = annotated('true', { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['connect'], action: 'SCMP_ACT_ALLOW' }] });
  seccomp.modify(alone, testCtx());
  t.deepEqual(profileOf(alone).syscalls, [{ names: ['connect'], action: 'SCMP_ACT_NOTIFY' }]);
  // An allowing default with no rule for connect: the rule is added.
  const allowAll = annotated('on', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ERRNO' }] });
  seccomp.modify(allowAll, testCtx());
  t.deepEqual(profileOf(allowAll).syscalls, [
    { names: ['mount'], action: 'SCMP_ACT_ERRNO' },
    { names: ALL, action: 'SCMP_ACT_NOTIFY' },
  ]);
  // Only some of them allowed: only those are notified.
  const some = annotated('true', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['getsockname'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] });
  seccomp.modify(some, testCtx());
  t.deepEqual(profileOf(some).syscalls, [
    { names: ['getsockname'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    { names: ['connect', 'getpeername', 'listen', 'accept', 'accept4'], action: 'SCMP_ACT_NOTIFY' },
  ]);
  // Without connect, listen is not notified either.
  const noConnect = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['connect'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] };
  const nc = annotated('true', clone(noConnect));
  seccomp.modify(nc, testCtx());
  t.deepEqual(profileOf(nc), noConnect);
});

test('a profile that does not simply allow connect is left as it is', (t) => {
  const cases: SeccompProfile[] = [
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['connect'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] },
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['connect'], action: 'SCMP_ACT_KILL' }] },
    { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] }, // connect denied by default
    {
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [{ names: ['connect'], action: 'SCMP_ACT_ALLOW', args: [{ index: 2, value: 16, op: 'SCMP_CMP_EQ' }] }],
    },
    { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/other-agent.sock', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] },
  ];
  for (const p of cases) {
    const spec = annotated('true', clone(p));
    seccomp.modify(spec, testCtx());
    t.deepEqual(spec.linux!.seccomp, p, JSON.stringify(p));
  }
});

test('not annotated, or annotated false: nothing changes; another value is an error naming the annotation', (t) => {
  for (const spec of [baseSpec(), annotated('false'), annotated('0'), annotated('No')]) {
    const before = clone(spec);
    seccomp.modify(spec, testCtx());
    t.deepEqual(spec, before);
  }
  const bad = annotated('ture');
  const err = t.throws(() => seccomp.modify(bad, testCtx()), { instanceOf: SpecError });
  t.regex(err!.message, /io\.slimfast\.seccomp="ture"/);
});

test('the metadata follows the id the container is registered with', (t) => {
  const spec = annotated();
  seccomp.modify(spec, testCtx());
  seccomp.modify(spec, testCtx({ id: 'c2' }));
  t.is(profileOf(spec).listenerMetadata, 'c2');
  t.is(profileOf(spec).syscalls!.length, 1);
});

test('"seccomp": true in the config file: containers without the annotation get the rule, an annotation false still opts out', (t) => {
  const plain = baseSpec();
  seccomp.modify(plain, testCtx({ seccompDefault: true }));
  t.deepEqual(profileOf(plain).syscalls, [{ names: ALL, action: 'SCMP_ACT_NOTIFY' }]);
  t.is(profileOf(plain).listenerPath, LISTENER);
  const out = annotated('false');
  seccomp.modify(out, testCtx({ seccompDefault: true }));
  t.is(out.linux!.seccomp, undefined, 'annotation false wins');
  const off = baseSpec();
  seccomp.modify(off, testCtx());
  t.is(off.linux!.seccomp, undefined, 'without the switch nothing changes');
});
