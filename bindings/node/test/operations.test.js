'use strict'
// Issue 12's additions to the server: many events in one call (hd_server_add_events) and the
// metrics (hd_server_metrics, the metricsListen responder).
const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('http')
const hd = require('..')
const { ORIGINAL, within, tmpDir, confirm } = require('./helpers')

const u1 = ORIGINAL.kp1.publicKey
const u2 = ORIGINAL.kp2.publicKey

function openServer (extra = {}) {
  return hd.createServer({ keyPair: ORIGINAL.kp0, topic: 'ops', dataDir: tmpDir('server'), listen: '127.0.0.1:0', onClientConsumedEvents: confirm, ...extra })
}

test('addEvents: many events, any users, one call; results in item order; each user\'s events in item order', { timeout: 20000 }, async () => {
  const server = openServer({ maxPendingPerUser: 3 })
  try {
    assert.equal(hd.ADD_EVENTS_MAX, 100000)
    const results = await server.addEvents([
      { user: u1, data: { n: 1 } },
      { user: u2, data: Buffer.from([7]) },
      { user: u1, data: { n: 2 }, options: { dedupKey: 'two' } },
      { user: u1.toString('hex'), data: { n: 2 }, options: { dedupKey: 'two' } }, // a repeat: nothing stored
      { user: u1, data: { n: 3 } },
      { user: u1, data: { n: 4 } } // past maxPendingPerUser: fails alone
    ])
    assert.deepEqual(results.map((r) => [r.user.toString('hex'), r.error && r.error.code, r.seq, r.duplicate]), [
      [u1.toString('hex'), null, 1, false], [u2.toString('hex'), null, 1, false], [u1.toString('hex'), null, 2, false],
      [u1.toString('hex'), null, 2, true], [u1.toString('hex'), null, 3, false], [u1.toString('hex'), 'ELIMIT', null, false]])
    assert.deepEqual(server.listEvents(u1).map((e) => e.payload), [{ n: 1 }, { n: 2 }, { n: 3 }])
    assert.deepEqual(server.listEvents(u2).map((e) => e.payload), [Buffer.from([7])])
    // an invalid item: the whole call is refused, nothing is added
    await assert.rejects(server.addEvents([{ user: u2, data: { ok: 1 } }, { user: u2, data: Buffer.alloc(0) }]), { code: 'EINVAL' })
    await assert.rejects(server.addEvents([{ user: Buffer.alloc(31), data: 1 }]), { code: 'EINVAL' })
    await assert.rejects(server.addEvents([]), { code: 'EINVAL' })
    assert.equal(server.pending(u2), 1)
  } finally {
    await server.close()
  }
})

/* The value of the first sample whose name matches `name` (a RegExp on the metric name). */
function sample (text, name) {
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/)
    if (m && name.test(m[1])) return Number(m[3])
  }
  return undefined
}

test('metrics(): the Prometheus text, names prefixed hyperdown_, the added counter moving', { timeout: 20000 }, async () => {
  const server = openServer()
  try {
    const before = server.metrics()
    assert.equal(typeof before, 'string')
    for (const line of before.split('\n').filter((l) => l && !l.startsWith('#'))) assert.match(line, /^hyperdown_/)
    const added = /^hyperdown_\w*added\w*$/
    const n0 = sample(before, added)
    assert.equal(typeof n0, 'number', before)
    await server.addEvent(u1, { n: 1 })
    assert.equal(sample(server.metrics(), added), n0 + 1)
  } finally {
    await server.close()
  }
})

function get (port, path) {
  return within(new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }))
    }).on('error', reject)
  }), 5000, `GET ${path}`)
}

test('metricsListen: /metrics, /healthz and /readyz on the server\'s loop; metricsPort', { timeout: 20000 }, async () => {
  const plain = openServer()
  assert.equal(plain.metricsPort, null, 'no responder without metricsListen')
  await plain.close()
  const server = openServer({ metricsListen: '127.0.0.1:0' })
  try {
    const port = server.metricsPort
    assert.ok(Number.isInteger(port) && port > 0, String(port))
    await server.addEvent(u1, { n: 1 })
    const m = await get(port, '/metrics')
    assert.equal(m.status, 200)
    assert.match(m.type, /^text\/plain/)
    assert.equal(sample(m.body, /^hyperdown_\w*added\w*$/), 1)
    assert.equal((await get(port, '/healthz')).status, 200)
    assert.equal((await get(port, '/readyz')).status, 200)
  } finally {
    await server.close()
  }
})

test('metricsListen must be a "host:port" string', () => {
  assert.throws(() => openServer({ metricsListen: 9100 }), { code: 'EINVAL' })
})
