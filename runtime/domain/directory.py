"""The agent directory: one stream per agent, folded into an ``Agent``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from contracts.commands import RegisterAgent
from contracts.envelope import EventEnvelope
from contracts.events import (
    AgentAvailabilityChanged,
    AgentRegistered,
    AgentRole,
    AgentUpdated,
    Event,
)


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent's directory entry."""

    agent_id: str
    version: int = 0
    name: str = ""
    role: str = AgentRole.AGENT.value
    teams: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    supervisor_id: str | None = None
    available: bool = False

    @property
    def exists(self) -> bool:
        """True once the agent was registered."""
        return self.version > 0

    def serves(self, team_or_skill: str) -> bool:
        """Whether the agent belongs to a team or has a skill of that name."""
        return team_or_skill in self.teams or team_or_skill in self.skills

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of the entry."""
        return {
            "agent_id": self.agent_id,
            "name": self.name,
            "role": self.role,
            "teams": list(self.teams),
            "skills": list(self.skills),
            "supervisor_id": self.supervisor_id,
            "available": self.available,
            "version": self.version,
        }


def evolve_agent(agent: Agent, envelope: EventEnvelope, event: Event) -> Agent:
    """Fold one directory event of this agent (``version`` counts the agent's own events)."""
    agent = replace(agent, version=agent.version + 1)
    if isinstance(event, AgentRegistered | AgentUpdated):
        return replace(
            agent,
            name=event.name,
            role=event.role.value,
            teams=tuple(event.teams),
            skills=tuple(event.skills),
            supervisor_id=event.supervisor_id,
            available=event.available,
        )
    if isinstance(event, AgentAvailabilityChanged):
        return replace(agent, available=event.available)
    return agent


@dataclass(frozen=True, slots=True)
class Directory:
    """A tenant's agent directory: one stream (``DIRECTORY_STREAM``) per tenant."""

    version: int = 0
    agents: dict[str, Agent] = field(default_factory=dict)

    def get(self, agent_id: str | None) -> Agent | None:
        """The entry of a registered agent, or None."""
        return self.agents.get(agent_id) if agent_id else None


DIRECTORY_STREAM = "directory"
"""The stream that holds a tenant's agent directory."""


def evolve_directory(directory: Directory, envelope: EventEnvelope, event: Event) -> Directory:
    """Fold one directory event into the directory."""
    agent_id = getattr(event, "agent_id", None)
    if not isinstance(event, AgentRegistered | AgentUpdated | AgentAvailabilityChanged) or agent_id is None:
        return replace(directory, version=envelope.stream_version)
    agent = directory.agents.get(agent_id) or Agent(agent_id)
    agent = evolve_agent(agent, envelope, event)
    return Directory(envelope.stream_version, {**directory.agents, agent_id: agent})


def decide_register_agent(directory: Directory, agent_id: str, command: RegisterAgent) -> list[Event]:
    """Register a new agent, or record what changed (nothing when nothing did)."""
    agent = directory.get(agent_id)
    if agent is None:
        return [
            AgentRegistered(
                agent_id=agent_id,
                name=command.name,
                role=command.role,
                teams=command.teams,
                skills=command.skills,
                supervisor_id=command.supervisor_id,
                available=command.available,
            )
        ]
    unchanged_entry = (
        agent.name == command.name
        and agent.role == command.role.value
        and agent.teams == tuple(command.teams)
        and agent.skills == tuple(command.skills)
        and agent.supervisor_id == command.supervisor_id
    )
    if unchanged_entry:
        if agent.available == command.available:
            return []
        return [AgentAvailabilityChanged(agent_id=agent_id, available=command.available)]
    return [
        AgentUpdated(
            agent_id=agent_id,
            name=command.name,
            role=command.role,
            teams=command.teams,
            skills=command.skills,
            supervisor_id=command.supervisor_id,
            available=command.available,
        )
    ]
