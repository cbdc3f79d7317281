'use strict'
// offsetlab's KafkaJS member: one consumer-group member in a child process, driven by the
// JSON-lines protocol of lib/offsetlab/lab/clients/protocol.py. The first stdin line is the
// MemberConfig; later lines are commands; every event is one JSON line on stdout. KafkaJS's own
// logs go to stderr (JSON lines, level INFO). KafkaJS runs at its defaults unless the config
// says otherwise.

const readline = require('readline')
const { performance } = require('perf_hooks')

const CLIENT = 'kafkajs'

function emit (event, fields = {}) {
  // stdout to a pipe is synchronous on Linux: a line is written before process.exit()
  const at = (performance.timeOrigin + performance.now()) / 1000
  process.stdout.write(JSON.stringify({ event, at, client: CLIENT, ...fields }) + '\n')
}

function errText (e) {
  if (e && typeof e === 'object') return `${e.name || 'Error'}: ${e.message}`
  return `Error: ${String(e)}`
}

let exiting = false
function die (code) {
  exiting = true
  process.exit(code)
}

function fatal (where, e) {
  if (exiting) return
  emit('error', { where, error: errText(e), fatal: true })
  emit('stopped', { clean: false })
  die(1)
}

process.on('unhandledRejection', e => fatal('unhandled_rejection', e))
process.stdout.on('error', () => die(4)) // nobody reads our events any more
process.on('uncaughtException', e => fatal('uncaught_exception', e))

// The parent is gone when our parent pid changes (we were reparented); besides stdin's EOF
// below and the PR_SET_PDEATHSIG the parent's ChildMember sets
const startPpid = process.ppid
setInterval(() => { if (process.ppid !== startPpid) die(3) }, 500)

let Kafka, logLevel
try {
  ({ Kafka, logLevel } = require('kafkajs')) // from NODE_PATH: the cache node.py installs
} catch (e) {
  fatal('start', e)
}

// KafkaJS logs: one JSON line each on stderr, never stdout
const logCreator = () => ({ namespace, label, log }) => {
  let line
  try {
    line = JSON.stringify({ level: label, namespace, ...log })
  } catch (_) {
    line = JSON.stringify({ level: label, namespace, message: String(log && log.message) })
  }
  process.stderr.write(line + '\n')
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

class DependencyDown extends Error {
  constructor (message) { super(message); this.name = 'DependencyDown' }
}
class HandlerFailure extends Error {
  constructor (message) { super(message); this.name = 'HandlerFailure' }
}

function main (cfg) {
  const extra = cfg.extra || {}
  const spec = cfg.handler || {}
  const topics = cfg.topics

  if (spec.on_fail === 'pause_and_seek') {
    fatal('start', new Error('on_fail pause_and_seek is a Python member\'s idiom; KafkaJS\'s is pause_and_throw'))
    return
  }

  const kafkaOpts = {
    clientId: `offsetlab-${cfg.who}`,
    brokers: cfg.bootstrap.split(','),
    logLevel: logLevel.INFO,
    logCreator,
    ...(extra.kafka || {})
  }
  if (extra.retry) kafkaOpts.retry = { ...(kafkaOpts.retry || {}), ...extra.retry }
  const kafka = new Kafka(kafkaOpts)

  const consumerOpts = { groupId: cfg.group }
  if (cfg.session_timeout_ms != null) consumerOpts.sessionTimeout = cfg.session_timeout_ms
  if (cfg.heartbeat_interval_ms != null) consumerOpts.heartbeatInterval = cfg.heartbeat_interval_ms
  if (cfg.rebalance_timeout_ms != null) consumerOpts.rebalanceTimeout = cfg.rebalance_timeout_ms
  Object.assign(consumerOpts, extra.consumer || {})
  const consumer = kafka.consumer(consumerOpts)

  // -- instrumentation events -> protocol events ---------------------------------------
  const ev = consumer.events
  // KafkaJS's rebalancing is eager: at every rebalance a member gives up all its partitions
  // and gets a new assignment at GROUP_JOIN, without any revoke callback. `assigned` and
  // `revoked` are the difference between this join's assignment and the previous one's.
  let held = new Set() // "topic\u0000partition"
  const key = (t, p) => `${t}\u0000${p}`
  const unkey = k => { const i = k.indexOf('\u0000'); return [k.slice(0, i), Number(k.slice(i + 1))] }

  const pausedNow = () => {
    try {
      return consumer.paused().flatMap(({ topic, partitions }) => partitions.map(p => [topic, p]))
    } catch (_) {
      return null
    }
  }
  consumer.on(ev.GROUP_JOIN, ({ payload }) => {
    const now = new Set()
    for (const [t, parts] of Object.entries(payload.memberAssignment || {})) {
      for (const p of parts) now.add(key(t, p))
    }
    const partitions = [...now].map(unkey)
    emit('join', {
      generation: null, // KafkaJS's GROUP_JOIN does not give the generation
      member_id: payload.memberId,
      leader: Boolean(payload.isLeader),
      join_s: payload.duration / 1000,
      partitions,
      group_protocol: payload.groupProtocol,
      paused: pausedNow() // KafkaJS's own paused list as the join completes
    })
    const revoked = [...held].filter(k => !now.has(k)).map(unkey)
    const added = [...now].filter(k => !held.has(k)).map(unkey)
    if (revoked.length) emit('revoked', { partitions: revoked })
    if (added.length) emit('assigned', { partitions: added })
    held = now
  })
  consumer.on(ev.COMMIT_OFFSETS, ({ payload }) => {
    for (const { topic, partitions } of payload.topics || []) {
      for (const { partition, offset } of partitions) {
        emit('commit', { topic, partition: Number(partition), offset: Number(String(offset)) })
      }
    }
  })
  consumer.on(ev.HEARTBEAT, ({ payload }) => {
    emit('heartbeat', { member_id: payload.memberId, generation: payload.groupGenerationId })
  })
  consumer.on(ev.CRASH, ({ payload }) => {
    const e = payload.error || {}
    emit('crash', {
      error: errText(e),
      restart: Boolean(payload.restart),
      group_id: payload.groupId,
      retry_count: e.retryCount == null ? null : e.retryCount
    })
  })
  consumer.on(ev.REBALANCING, ({ payload }) => {
    emit('rebalancing', { member_id: payload.memberId, group_id: payload.groupId })
  })
  consumer.on(ev.STOP, () => emit('consumer_stop'))
  consumer.on(ev.DISCONNECT, () => {
    emit('disconnect')
    // a disconnect (on stop, and on a crash before KafkaJS restarts the consumer) leaves the
    // group: the member holds nothing until its next GROUP_JOIN
    if (held.size) emit('revoked', { partitions: [...held].map(unkey), by: 'disconnect' })
    held = new Set()
  })
  consumer.on(ev.REQUEST_TIMEOUT, ({ payload }) => {
    emit('request_timeout', { broker: payload.broker, api: payload.apiName, correlation_id: payload.correlationId })
  })

  // -- the handler ----------------------------------------------------------------------
  let dependencyUp = spec.dependency_up !== false
  const failures = new Map() // value -> failures so far
  const deliveries = new Map() // "topic partition offset" -> deliveries to this process
  let firstBlocked = false
  const failValues = new Set(spec.fail_values || [])
  const failTimes = spec.fail_times == null ? 1 : spec.fail_times

  // Handle one message; returns 'handled', or for a failure 'skip' / 'return' (on_fail),
  // throws when the handler fails into KafkaJS.
  async function handle (topic, partition, message) {
    const offset = Number(message.offset)
    const dk = `${topic} ${partition} ${message.offset}`
    const attempt = (deliveries.get(dk) || 0) + 1
    deliveries.set(dk, attempt)
    const value = message.value == null ? null : message.value.toString()
    const mkey = message.key == null ? null : message.key.toString()

    if (!firstBlocked && spec.block_first_s > 0) {
      firstBlocked = true
      await sleep(spec.block_first_s * 1000)
    }
    firstBlocked = true
    if (spec.sleep_s > 0) await sleep(spec.sleep_s * 1000)

    let error = null
    if (!dependencyUp) {
      error = new DependencyDown('the dependency is down')
    } else if (failValues.has(value)) {
      const n = failures.get(value) || 0
      if (failTimes < 0 || n < failTimes) {
        failures.set(value, n + 1)
        error = new HandlerFailure(`message ${value} fails (failure ${n + 1})`)
      }
    }
    if (error === null) {
      emit('handled', { topic, partition, offset, key: mkey, value, attempt })
      return 'handled'
    }
    emit('handler_failed', { topic, partition, offset, value, error: errText(error), attempt })
    if (spec.on_fail === 'skip' || spec.on_fail === 'return') return spec.on_fail
    if (spec.on_fail === 'pause_and_throw') {
      // The KafkaJS docs' pattern for a failing dependency inside eachMessage
      consumer.pause([{ topic, partitions: [partition] }])
      emit('pause', { partitions: [[topic, partition]], by: 'handler' })
      setTimeout(() => {
        try {
          consumer.resume([{ topic, partitions: [partition] }])
          emit('resume', { partitions: [[topic, partition]], by: 'handler' })
        } catch (e) {
          emit('error', { where: 'resume', error: errText(e), fatal: false })
        }
      }, (spec.retry_after_s == null ? 1 : spec.retry_after_s) * 1000)
    }
    throw error
  }

  // commit modes: idiomatic/auto -> KafkaJS's resolve-and-auto-commit; message_offset /
  // offset_plus_one -> autoCommit off and commitOffsets after each message; none -> never
  const manual = cfg.commit === 'message_offset' || cfg.commit === 'offset_plus_one'
  const autoCommit = cfg.commit === 'idiomatic' || cfg.commit === 'auto'

  async function commitAfter (topic, partition, message) {
    if (!manual) return
    const offset = cfg.commit === 'offset_plus_one'
      ? (BigInt(message.offset) + 1n).toString()
      : message.offset
    try {
      await consumer.commitOffsets([{ topic, partition, offset }])
    } catch (e) {
      emit('commit_failed', { topic, partition, offset: Number(offset), error: errText(e) })
    }
  }

  const runOpts = { autoCommit }
  if (cfg.style === 'batch') {
    // the KafkaJS docs' eachBatch loop: stop at a stale batch (a seek, a rebalance) or a stop
    runOpts.eachBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      for (const message of batch.messages) {
        if (!isRunning() || isStale()) break
        const done = await handle(batch.topic, batch.partition, message)
        // on_fail return: leave eachBatch at the failure without throwing (what KafkaJS
        // resolves then is its eachBatchAutoResolve's business); skip: go on without
        // resolving or committing the failed message (the seed's "resolve the others")
        if (done === 'return') return
        if (done === 'skip') continue
        resolveOffset(message.offset)
        await commitAfter(batch.topic, batch.partition, message)
        await heartbeat()
      }
    }
  } else {
    runOpts.eachMessage = async ({ topic, partition, message }) => {
      // a skipped (or returned) failure is not committed here; returning from eachMessage
      // is success to KafkaJS, which resolves the message for its own auto-commit
      if (await handle(topic, partition, message) !== 'handled') return
      await commitAfter(topic, partition, message)
    }
  }
  Object.assign(runOpts, extra.run || {})

  // -- commands -------------------------------------------------------------------------
  function targets (partitions) {
    if (partitions == null) return topics.map(topic => ({ topic }))
    return topics.map(topic => ({ topic, partitions }))
  }
  function named (partitions) {
    if (partitions != null) return topics.flatMap(t => partitions.map(p => [t, p]))
    return [...held].map(unkey).filter(([t]) => topics.includes(t))
  }
  let stopping = false
  async function command (cmd) {
    switch (cmd.cmd) {
      case 'pause':
      case 'resume':
        try {
          consumer[cmd.cmd](targets(cmd.partitions))
          const fields = { partitions: named(cmd.partitions), by: 'command' }
          if (cmd.partitions == null) fields.topics = topics
          emit(cmd.cmd, fields)
        } catch (e) {
          emit('error', { where: cmd.cmd, error: errText(e), fatal: false })
        }
        break
      case 'dependency':
        dependencyUp = Boolean(cmd.up)
        break
      case 'stop':
        if (stopping) return
        stopping = true
        try {
          await consumer.disconnect()
        } catch (e) {
          emit('error', { where: 'stop', error: errText(e), fatal: false })
          emit('stopped', { clean: false })
          die(1)
          return
        }
        emit('stopped', { clean: true })
        die(0)
        break
      default:
        emit('error', { where: 'command', error: `UnknownCommand: ${JSON.stringify(cmd)}`, fatal: false })
    }
  }

  async function start () {
    emit('ready', { kafkajs: require('kafkajs/package.json').version, node: process.version })
    // what each call resolved to (the seed's run02: "return undefined"), on run_returned
    const shown = v => (v === undefined ? 'undefined' : (v === null ? 'null' : typeof v))
    const returned = {}
    try {
      returned.connect = shown(await consumer.connect())
    } catch (e) {
      fatal('start', e)
      return
    }
    try {
      returned.subscribe = shown(await consumer.subscribe({ topics, fromBeginning: cfg.from_beginning !== false }))
    } catch (e) {
      fatal('subscribe', e)
      return
    }
    emit('run_called')
    try {
      returned.run = shown(await consumer.run(runOpts))
    } catch (e) {
      fatal('run', e)
      return
    }
    emit('run_returned', { returned })
  }

  return { command, start }
}

// -- stdin: the config line, then commands; EOF means the parent is gone ------------------
let member = null
let queue = Promise.resolve()
const rl = readline.createInterface({ input: process.stdin, terminal: false })
rl.on('line', line => {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (e) {
    emit('error', { where: 'command', error: `SyntaxError: ${e.message}`, fatal: member === null })
    if (member === null) die(2)
    return
  }
  if (member === null) {
    try {
      member = main(msg)
    } catch (e) {
      fatal('start', e)
      return
    }
    if (member) member.start()
    return
  }
  // commands run one after the other, in arrival order
  queue = queue.then(() => member.command(msg)).catch(e => emit('error', { where: 'command', error: errText(e), fatal: false }))
})
// stdin EOF: the parent is gone; exit at once (status 3, as the Python members), no clean
// leave (as a SIGKILL would)
rl.on('close', () => die(3))
