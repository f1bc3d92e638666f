"""What supervisors send: login, and the bodies of their actions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginRequest(_Body):
    username: Name
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class PauseRequest(_Body):
    reason: Annotated[str, Field(min_length=1, max_length=40)]


class SkillsRequest(_Body):
    skills: dict[Name, Annotated[int, Field(ge=1, le=10)]]


class SpyRequest(_Body):
    mode: Literal["listen", "whisper", "barge"]


class PriorityRequest(_Body):
    priority_class: Name
