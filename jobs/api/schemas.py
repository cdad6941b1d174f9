"""Request bodies as the openai SDK sends them. Unknown fields are refused, so a typo is a 400
naming the parameter instead of a silently ignored setting."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Auto = Literal["auto"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(Strict):
    n_epochs: Auto | Annotated[int, Field(gt=0, le=1000)] | None = None
    batch_size: Auto | Annotated[int, Field(gt=0, le=4096)] | None = None
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=100)] | None = None


class DpoHyperparameters(Hyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=10)] | None = None


class Supervised(Strict):
    hyperparameters: Hyperparameters | None = None


class Dpo(Strict):
    hyperparameters: DpoHyperparameters | None = None


class Method(Strict):
    type: Literal["supervised", "dpo"]
    supervised: Supervised | None = None
    dpo: Dpo | None = None


class Wandb(Strict):
    project: str = Field(max_length=128, pattern=r"^[-_.A-Za-z0-9]+$")
    name: str | None = Field(default=None, max_length=128)
    entity: str | None = Field(default=None, max_length=128)
    tags: list[str] = Field(default_factory=list)


class Integration(Strict):
    type: Literal["wandb"]
    wandb: Wandb


class JobCreate(Strict):
    model: str = Field(min_length=1, max_length=128)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(default=None, max_length=64, pattern=r"^[-_A-Za-z0-9]*$")
    integrations: list[Integration] | None = Field(default=None, max_length=1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> JobCreate:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError("give hyperparameters under method, not both at the top level and in method")
        return self

    def method_type(self) -> str:
        return self.method.type if self.method else "supervised"

    def effective_hyperparameters(self) -> Hyperparameters:
        if self.method is None:
            return self.hyperparameters or Hyperparameters()
        inner = self.method.dpo if self.method.type == "dpo" else self.method.supervised
        hp = inner.hyperparameters if inner else None
        return hp or (DpoHyperparameters() if self.method.type == "dpo" else Hyperparameters())
