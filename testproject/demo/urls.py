from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<str:type_name>/", views.start_job, name="start-job"),
]
