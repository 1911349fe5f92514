"""`agents-svc`: a planner agent delegating to a research agent (tool calls) and a
synthesis agent. Model calls are CLIENT spans inside each agent's span.

In a loop (scenario agent_loop) the research agent keeps calling the same tool
with the same arguments until the iteration limit ends the run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from contextlib import AbstractContextManager

from opentelemetry.trace import SpanKind

from appliance.demo import calls, catalog, corpus
from appliance.demo.conditions import Conditions
from appliance.demo.plan import SpanPlan, TraceBuilder

SERVICE = "agents-svc"
PLANNER, RESEARCH, SYNTHESIS = "planner", "research", "synthesis"
MODELS = {PLANNER: catalog.GPT_4O, RESEARCH: catalog.CLAUDE, SYNTHESIS: catalog.GPT_4O_MINI}


class AgentError(Exception):
    """An agent gave up; carries the error.type its run ends with."""

    def __init__(self, error_type: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type


class AgentsApp:
    service = SERVICE

    def trace(self, tb: TraceBuilder, rng: random.Random, cond: Conditions) -> None:
        task, query, doc = rng.choice(corpus.AGENT_TASKS)
        loops = rng.random() < cond.loop_rate
        with tb.span("POST /v1/tasks", SpanKind.SERVER,
                     {"http.request.method": "POST", "http.route": "/v1/tasks"}) as root:
            tb.elapse(rng.uniform(0.002, 0.01))  # validate and queue the task
            try:
                with self._agent(tb, PLANNER, task) as planner:
                    try:
                        self._call(tb, rng, cond, PLANNER, 600 + len(task), 180, "plan")
                        notes = self._research(tb, rng, cond, query, doc, loops)
                        with self._agent(tb, SYNTHESIS, task) as synthesis:
                            self._guard(synthesis, lambda: self._call(
                                tb, rng, cond, SYNTHESIS, 900 + notes, 450, "report"))
                    except AgentError as exc:
                        planner.fail(exc.error_type)
                        raise
            except AgentError as exc:
                root.set(http__response__status_code=500)
                root.fail(exc.error_type)
                return
            tb.elapse(rng.uniform(0.002, 0.01))  # store the report
            root.set(http__response__status_code=200)

    def _agent(self, tb: TraceBuilder, name: str,
               task: str) -> AbstractContextManager[SpanPlan]:
        return tb.span(f"invoke_agent {name}", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name,
            "gen_ai.agent.id": f"agt-{name}", "gen_ai.provider.name": MODELS[name].provider,
            "gen_ai.request.model": MODELS[name].name, "tracehold.agent.task": task,
        })

    @staticmethod
    def _guard(agent: SpanPlan, work: Callable[[], None]) -> None:
        try:
            work()
        except AgentError as exc:
            agent.fail(exc.error_type)
            raise

    def _research(self, tb: TraceBuilder, rng: random.Random, cond: Conditions, query: str,
                  doc: str, loops: bool) -> int:
        """Returns the tokens of notes handed to synthesis."""
        with self._agent(tb, RESEARCH, query) as agent:
            def work() -> None:
                if loops:
                    self._loop(tb, rng, cond, query, agent)
                Step = tuple[str, dict[str, object]]
                steps: list[Step] = [("web_search", {"query": query, "top_n": 5})]
                fetch: list[Step] = [("fetch_document", {"path": doc})]
                steps += fetch[: rng.randint(0, 1)]
                if rng.random() < 0.5:
                    steps.append(("web_search", {"query": f"{query} latest", "top_n": 5}))
                context = 700
                for i, (tool, args) in enumerate(steps, 1):
                    self._call(tb, rng, cond, RESEARCH, context, 60, "decide")
                    context += self._tool(tb, rng, tool, args, i)
                self._call(tb, rng, cond, RESEARCH, context, 320, "summarise")

            self._guard(agent, work)
        return rng.randint(300, 900)

    def _loop(self, tb: TraceBuilder, rng: random.Random, cond: Conditions, query: str,
              agent: SpanPlan) -> None:
        """The failure: each turn the model asks for the same search again."""
        args, context = {"query": query, "top_n": 5}, 700
        for i in range(1, cond.max_iterations + 1):
            self._call(tb, rng, cond, RESEARCH, context, 60, "decide")
            context += self._tool(tb, rng, "web_search", args, i)
        agent.set(tracehold__agent__iterations=cond.max_iterations)
        raise AgentError("max_iterations_exceeded")

    def _tool(self, tb: TraceBuilder, rng: random.Random, tool: str,
              args: dict[str, object], iteration: int) -> int:
        with tb.span(f"execute_tool {tool}", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function", "gen_ai.agent.name": RESEARCH,
            "gen_ai.tool.call.id": f"call_{rng.getrandbits(48):012x}",
            "gen_ai.tool.call.arguments": json.dumps(args, sort_keys=True),
            "tracehold.agent.iteration": iteration,
        }) as span:
            tb.elapse(rng.lognormvariate(-0.5, 0.4) if tool == "web_search"
                      else rng.lognormvariate(-1.4, 0.3))
            found = rng.randint(120, 420)
            span.set(gen_ai__tool__call__result=json.dumps({"results": 5, "tokens": found}))
        return found

    def _call(self, tb: TraceBuilder, rng: random.Random, cond: Conditions, agent: str,
              input_tokens: int, output_tokens: int, purpose: str) -> None:
        req = calls.ChatRequest(
            model=MODELS[agent], input_tokens=input_tokens,
            output_tokens=int(output_tokens * rng.lognormvariate(0, 0.3)),
            input_messages=calls.messages(("system", f"You are the {agent} agent."),
                                          ("user", f"Next step: {purpose}.")),
            output_text=f"({agent} {purpose})", temperature=0.3, max_tokens=2048,
            attributes={"gen_ai.agent.name": agent},
        )
        result = calls.chat(tb, rng, req, cond)
        if result.span is None:
            raise AgentError(result.error or "unknown")
