// A Microsoft 365 Agents SDK for JavaScript agent (@microsoft/agents-hosting + @microsoft/agents-hosting-express),
// anonymous (no clientId, NODE_ENV not production), for botproxy's tests.
//
//   node agents_bot.js PORT [BUILD]     # prints "READY" when listening on 127.0.0.1:PORT/api/messages
//
// It answers, through the SDK's own connector client:
// - "stream": a streamed reply with the SDK's StreamingResponse: an informative update, text chunks, then the
//   final with a hero card, the AI label and the feedback loop; build 2 streams another text (for replay);
// - "card": an Adaptive Card;
// - "proactive": "ok" now, then "later" through continueConversation after the turn has ended;
// - anything else: "echo: <text>".
'use strict'

const { AgentApplication, MemoryStorage, CardFactory, MessageFactory } = require('@microsoft/agents-hosting')
const { startServer } = require('@microsoft/agents-hosting-express')

const port = Number(process.argv[2])
const build = Number(process.argv[3] || 1)
const STREAMED = ['The quick', ' brown fox', ' jumps over', ' the lazy dog.']
const CHANGED = ['The slow', ' grey cat', ' sleeps.']
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const agent = new AgentApplication({ storage: new MemoryStorage() })

async function stream (context, parts) {
  const response = context.streamingResponse
  response.queueInformativeUpdate('Looking it up...')
  response.queueTextChunk(parts[0])
  // However slow the machine, at least one chunk goes out before the final (the SDK folds chunks still
  // queued at endStream into the final): wait until the SDK has sent what is queued (a method the SDK
  // does not export in its types, hence the fallback).
  if (typeof response.waitForQueue === 'function') await response.waitForQueue()
  else await sleep(2500)
  for (const part of parts.slice(1)) {
    await sleep(300)
    response.queueTextChunk(part)
  }
  response.setAttachments([CardFactory.heroCard('Fox facts')])
  response.setGeneratedByAILabel(true)
  response.setFeedbackLoop(true)
  await response.endStream()
}

async function card (context) {
  const content = {
    type: 'AdaptiveCard',
    version: '1.5',
    body: [{ type: 'TextBlock', text: 'Pick one' }],
    actions: [{ type: 'Action.Submit', title: 'Fox', data: { pick: 'fox' } }]
  }
  await context.sendActivity(MessageFactory.attachment(CardFactory.adaptiveCard(content)))
}

agent.onActivity('message', async (context) => {
  const text = (context.activity.text || '').trim().toLowerCase()
  if (text === 'stream') {
    await stream(context, build === 2 ? CHANGED : STREAMED)
  } else if (text === 'card') {
    await card(context)
  } else if (text === 'proactive') {
    await context.sendActivity('ok')
    const reference = context.activity.getConversationReference()
    const identity = context.identity
    const adapter = context.adapter
    setTimeout(() => {
      adapter.continueConversation(identity, reference, async (turn) => {
        await turn.sendActivity('later')
      }).catch((err) => console.error('proactive send failed', err))
    }, 200)
  } else {
    await context.sendActivity(`echo: ${context.activity.text}`)
  }
})

// startServer listens on every interface; the tests may only use 127.0.0.1, so bind its listen there.
startServer(agent, {
  port,
  beforeListen: (server) => {
    const listen = server.listen.bind(server)
    server.listen = (p, callback) => listen(p, '127.0.0.1', () => {
      console.log('READY')
      if (callback) callback()
    })
  }
})
